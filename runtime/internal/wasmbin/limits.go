package wasmbin

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// This file implements CheckLimits. It walks a module the way wazero
// v1.12's decoder (internal/wasm/binary) does, byte for byte, so that every
// count wazero reads is a count checked here; see DESIGN.md, "Bounding
// declared counts".

// Limits enforced by CheckLimits. The first group are the implementation
// limits of the WebAssembly JavaScript API, which every browser enforces
// (https://webassembly.github.io/spec/js-api/#limits), so modules that run
// on the web pass; they are all below wazero's own maxima (1<<27 functions,
// globals and tables).
const (
	maxTypes          = 1_000_000 // types, counting rec group members
	maxFunctions      = 1_000_000 // defined functions
	maxImports        = 100_000
	maxExports        = 100_000
	maxGlobals        = 1_000_000 // defined globals
	maxDataSegments   = 100_000
	maxTables         = MaxTables // imported and defined; not the JS API's 100,000, see tables.go
	maxTableSize      = 10_000_000
	maxTableInit      = 10_000_000 // entries of one element segment
	maxTags           = 1_000_000  // defined tags
	maxParams         = 1_000      // per function type
	maxResults        = 1_000      // per function type
	maxFunctionSize   = 7_654_321  // bytes of one function body
	maxFunctionLocals = 50_000     // parameters and declared locals of one function

	// maxFunctionControl bounds the blocks, loops, ifs, elses,
	// try_tables and branches (br, br_if, br_table, br_on_null and
	// br_on_non_null) of one function, and maxControlCost the sum over all functions of that
	// count squared: wazero's compile time grows with its square (its
	// dominator and loop-nesting passes), and a compile cannot be
	// interrupted. On the slowest host measured (DESIGN.md, "Bounding
	// compile time") one function at the limit compiles in about 9 s and
	// a module at the budget in about a minute; Go guests stay far below
	// (at most ~2,200 in one function, ~8.4e7 in all for 6 MB of
	// net/http).
	maxFunctionControl = 12_000
	maxControlCost     = 1_000_000_000

	// maxTotalTableSize bounds the sum of the minimum sizes of all tables:
	// wazero allocates 8 bytes per entry when it instantiates the module.
	// CapTables bounds the sum of their maxima by the same number.
	maxTotalTableSize = MaxTableEntries

	// The value slot budget (see limitChecker.spend and DESIGN.md) is
	// slotBase plus slotsPerByte per byte of input.
	slotBase     = 1 << 16
	slotsPerByte = 2
)

// limitf returns an error wrapping ErrLimit that reports the absolute
// offset off.
func limitf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte offset %d", ErrLimit, fmt.Sprintf(format, args...), off)
}

// CheckLimits reports whether wasm can be handed to wazero v1.12's
// CompileModule (and instantiated) without a declared count making wazero
// allocate memory out of proportion to len(wasm). It returns nil, or an
// error wrapping ErrMalformed (the module does not decode the way wazero
// would decode it) or ErrLimit (a count or size exceeds a limit), naming
// what is wrong and its byte offset in wasm.
//
// wazero allocates a vector's declared length before decoding the vector's
// elements (sections, names, locals, data, element initializers, function
// type parameters...), so a module of a few bytes can declare 2^32-1 of
// something and make the Go runtime die with a fatal, unrecoverable out of
// memory error. CheckLimits decodes every section as wazero does and
// requires:
//
//   - every vector length to fit in the bytes left in its section (or
//     function body, or name subsection), given the smallest encoding of
//     one element, and every section, function body, name and data
//     segment to fit in the bytes that contain it;
//   - every section and name subsection wazero decodes to end exactly
//     where its size says (wazero decodes past a short section before it
//     notices, reading whatever follows as counts);
//   - the implementation limits of the WebAssembly JavaScript API, which
//     browsers enforce: at most 1,000,000 types, defined functions,
//     globals and tags, 100,000 imports, exports and data segments,
//     1,000 parameters and 1,000 results per function type, 50,000
//     parameters and locals per function, 7,654,321 bytes per function
//     body, 10,000,000 entries per table and element segment; and, below
//     the JS API's limits, at most MaxTables (64) tables and
//     MaxTableEntries (10,000,000) table entries in all (tables are
//     allocated for every instance, outside linear memory; see CapTables);
//   - a budget of value slots: wazero's validator and compiler allocate
//     per parameter, result and local, and per value that an instruction
//     referring to a function type (a call, a block with a type index) or a
//     branch carries, so a module with large types and many short
//     instructions referring to them is bounded too. The budget is 65,536
//     plus 2 per byte of input; DESIGN.md explains how slots are counted.
//
// A module that passes may still be invalid: wazero validates it. Memory
// limits are not checked here: wazero's RuntimeConfig.WithMemoryLimitPages
// bounds them. Compiling a module that passes still costs wazero up to
// about 1.5 KB of allocation per byte of dense code, and CPU time that
// grows with the square of the number of branches in one function (see
// DESIGN.md): callers should also bound the upload size. CheckLimits never
// panics, never modifies wasm, and allocates at most a few bytes per byte
// of input.
func CheckLimits(wasm []byte) error {
	c := &limitChecker{wasm: wasm, dataCount: -1, slotLimit: slotBase + slotsPerByte*uint64(len(wasm))}
	return c.check()
}

// arity is the number of parameters and results of a function type.
type arity struct{ params, results uint16 }

// limitChecker holds what CheckLimits has learnt about a module so far.
type limitChecker struct {
	wasm []byte

	types     []arity  // every type, rec group members included
	maxArity  uint64   // largest parameter or result count of any type
	funcTypes []uint32 // type index of every function, imports first
	imported  uint32   // imported functions
	tagTypes  []uint32 // type index of every tag, imports first

	labels []label // reused by bodySlots

	// funcRef, when set, is told every function index that an element
	// segment or a constant expression (ref.func) of the table, global
	// and element sections names (FindStateWrite). CheckLimits sets none.
	funcRef func(idx uint32)

	tables       uint32 // imported and defined
	tableTotal   uint64 // sum of the tables' minimum sizes
	passiveElems uint64 // entries of passive element segments (TableBytes)

	dataCount    int64 // the data count section's value, or -1
	dataSegments uint32
	codeCount    uint32
	hasName      bool

	slots     uint64 // value slots spent so far
	slotLimit uint64 // the budget

	// bodySlots' count of the last body's blocks and branches (see
	// maxFunctionControl).
	bodyCtl uint64
	ctlCost uint64 // sum over the bodies so far of bodyCtl squared
}

// check walks the module.
func (c *limitChecker) check() error {
	r := &reader{buf: c.wasm}
	magic, err := r.bytes(4, "magic number")
	if err != nil {
		return err
	}
	if string(magic) != "\x00asm" {
		return errorf(0, "bad magic number %x", magic)
	}
	version, err := r.bytes(4, "version")
	if err != nil {
		return err
	}
	if string(version) != "\x01\x00\x00\x00" {
		return errorf(4, "unsupported version %x", version)
	}
	lastRank := 0
	for r.remaining() > 0 {
		start := r.pos
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return errorf(start, "section %d size %d exceeds the %d remaining bytes", id, size, r.remaining())
		}
		payload := r.pos
		r.pos += int(size)
		if id != secCustom {
			if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
				return errorf(start, "unknown section id %d", id)
			}
			if sectionRank[id] <= lastRank {
				return errorf(start, "section id %d is duplicated or out of order", id)
			}
			lastRank = sectionRank[id]
		}
		sr := &reader{buf: c.wasm[payload:r.pos], base: payload}
		if err := c.section(id, sr); err != nil {
			return err
		}
		if sr.remaining() != 0 {
			return sr.fail("section %d has %d trailing bytes", id, sr.remaining())
		}
	}
	if c.dataCount >= 0 && c.dataCount != int64(c.dataSegments) {
		return errorf(len(c.wasm), "data count section says %d data segments but the data section has %d", c.dataCount, c.dataSegments)
	}
	if defined := uint32(len(c.funcTypes)) - c.imported; c.codeCount != defined {
		return errorf(len(c.wasm), "%d functions declared but %d function bodies", defined, c.codeCount)
	}
	return nil
}

// section checks one section; r covers exactly its payload.
func (c *limitChecker) section(id byte, r *reader) error {
	switch id {
	case secCustom:
		return c.custom(r)
	case 1:
		return c.typeSection(r)
	case secImport:
		return c.importSection(r)
	case 3:
		return c.functionSection(r)
	case 4:
		return c.tableSection(r)
	case secMemory:
		return c.memorySection(r)
	case 13:
		return c.tagSection(r)
	case secGlobal:
		return c.globalSection(r)
	case secExport:
		return c.exportSection(r)
	case secStart:
		_, err := r.u32("start function index")
		return err
	case 9:
		return c.elementSection(r)
	case 12:
		n, err := r.u32("data count")
		c.dataCount = int64(n)
		return err
	case secCode:
		return c.codeSection(r)
	case 11:
		return c.dataSection(r)
	}
	return r.fail("unknown section id %d", id) // unreachable: check filters ids
}

// limitCount reads a vector length that must fit in the remaining bytes
// (each element taking at least minSize bytes) and not exceed max.
func (r *reader) limitCount(what string, minSize int, max uint64) (uint32, error) {
	off := r.off()
	n, err := r.count(what, minSize)
	if err != nil {
		return 0, err
	}
	if uint64(n) > max {
		return 0, limitf(off, "%s %d exceeds the limit of %d", what, n, max)
	}
	return n, nil
}

// skipName reads a length-prefixed UTF-8 name without copying it.
func (r *reader) skipName(what string) error {
	_, err := r.nameBytes(what)
	return err
}

// nameBytes reads a length-prefixed UTF-8 name and returns its bytes
// without copying them.
func (r *reader) nameBytes(what string) ([]byte, error) {
	off := r.off()
	n, err := r.u32(what + " length")
	if err != nil {
		return nil, err
	}
	b, err := r.bytes(int(n), what)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, errorf(off, "%s is not valid UTF-8", what)
	}
	return b, nil
}

// custom checks a custom section. wazero decodes the "name" section; other
// custom sections are copied (their size is already bounded).
func (c *limitChecker) custom(r *reader) error {
	name, err := r.nameBytes("custom section name")
	if err != nil {
		return err
	}
	if string(name) != "name" { // compares the decoded name: its length may be padded
		r.pos = len(r.buf)
		return nil
	}
	if c.hasName {
		return r.fail("duplicate name section")
	}
	c.hasName = true
	return nameSection(r)
}

// nameSection checks the subsections of the name section. wazero decodes
// subsections 0 (module name), 1 (function names) and 2 (local names)
// without bounding them by their declared size and then subtracts that
// size from what is left of the section, so a subsection whose contents
// do not end exactly at its declared end would make it decode the
// following bytes as counts. Other subsections are skipped.
func nameSection(r *reader) error {
	for r.remaining() > 0 {
		start := r.off()
		id, _ := r.byte("name subsection id")
		size, err := r.u32("name subsection size")
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return errorf(start, "name subsection %d size %d exceeds the %d remaining bytes", id, size, r.remaining())
		}
		sr := &reader{buf: r.buf[r.pos : r.pos+int(size)], base: r.off()}
		r.pos += int(size)
		switch id {
		case 0:
			err = sr.skipName("module name")
		case 1:
			err = nameMap(sr, "function name count")
		case 2:
			var n uint32
			if n, err = sr.count("local name function count", 2); err != nil {
				return err
			}
			for i := uint32(0); i < n && err == nil; i++ {
				if _, err = sr.u32("local name function index"); err == nil {
					err = nameMap(sr, "local name count")
				}
			}
		default:
			sr.pos = len(sr.buf)
		}
		if err != nil {
			return err
		}
		if sr.remaining() != 0 {
			return sr.fail("name subsection %d has %d trailing bytes", id, sr.remaining())
		}
	}
	return nil
}

// nameMap checks a name map: a vector of (index, name) pairs.
func nameMap(r *reader, what string) error {
	n, err := r.count(what, 2)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.u32("name map index"); err != nil {
			return err
		}
		if err := r.skipName("name"); err != nil {
			return err
		}
	}
	return nil
}

// typeSection checks the function types, including GC rec groups (0x4e),
// which wazero decodes whatever features are enabled.
func (c *limitChecker) typeSection(r *reader) error {
	n, err := r.limitCount("type count", 2, maxTypes)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if r.remaining() > 0 && r.buf[r.pos] == 0x4e {
			r.pos++
			m, err := r.count("rec group type count", 3)
			if err != nil {
				return err
			}
			for j := uint32(0); j < m; j++ {
				if err := c.funcType(r); err != nil {
					return err
				}
			}
			continue
		}
		if err := c.funcType(r); err != nil {
			return err
		}
	}
	return nil
}

// funcType checks one function type and records its arity.
func (c *limitChecker) funcType(r *reader) error {
	off := r.off()
	if len(c.types) >= maxTypes {
		return limitf(off, "more than %d types", maxTypes)
	}
	b, err := r.byte("function type")
	if err != nil {
		return err
	}
	if b != 0x60 {
		return errorf(off, "function type starts with 0x%02x, not 0x60", b)
	}
	var a arity
	for k, what := range [2]string{"parameter count", "result count"} {
		max := uint64(maxParams)
		if k == 1 {
			max = maxResults
		}
		n, err := r.limitCount(what, 1, max)
		if err != nil {
			return err
		}
		for i := uint32(0); i < n; i++ {
			if err := r.wazeroValType("value type"); err != nil {
				return err
			}
		}
		if k == 0 {
			a.params = uint16(n)
		} else {
			a.results = uint16(n)
		}
		c.maxArity = max64(c.maxArity, uint64(n))
	}
	c.types = append(c.types, a)
	return nil
}

// wazeroValType reads a value type as wazero's decodeValueTypes does: a
// one-byte type, or 0x63/0x64 followed by a heap type.
func (r *reader) wazeroValType(what string) error {
	off := r.off()
	b, err := r.byte(what)
	if err != nil {
		return err
	}
	switch b {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
		return nil
	case 0x63, 0x64:
		return r.wazeroHeapType(what)
	}
	return errorf(off, "unsupported %s 0x%02x", what, b)
}

// wazeroHeapType reads a heap type as wazero's decodeRefType does: a
// signed 33-bit LEB128 that is a type index or func, extern or exn.
func (r *reader) wazeroHeapType(what string) error {
	off := r.off()
	v, err := r.leb(what+" heap type", 33, true)
	if err != nil {
		return err
	}
	switch t := int64(v); {
	case t >= 0, t == 0x70-0x80, t == 0x6f-0x80, t == 0x69-0x80:
		return nil
	default:
		return errorf(off, "unsupported %s heap type %d", what, t)
	}
}

// importSection checks the imports and records imported functions and
// tags and the size of imported tables.
func (c *limitChecker) importSection(r *reader) error {
	n, err := r.limitCount("import count", 4, maxImports)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.skipName("import module name"); err != nil {
			return err
		}
		if err := r.skipName("import name"); err != nil {
			return err
		}
		off := r.off()
		kind, err := r.byte("import kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0:
			var t uint32
			if t, err = c.typeIndex(r, "imported function type index"); err == nil {
				c.funcTypes = append(c.funcTypes, t)
				c.imported++
				a := c.types[t]
				err = c.spend(off, uint64(a.params)+uint64(a.results), "imported function")
			}
		case 1:
			err = c.table(r)
		case 2:
			err = r.wazeroLimits("memory limits")
		case externGlobal:
			err = r.wazeroGlobalType()
		case 4:
			var t uint32
			if t, err = r.tag(); err == nil {
				c.tagTypes = append(c.tagTypes, t)
			}
		default:
			return errorf(off, "unknown import kind %d", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// typeIndex reads a type index that must name a known type.
func (c *limitChecker) typeIndex(r *reader, what string) (uint32, error) {
	off := r.off()
	t, err := r.u32(what)
	if err != nil {
		return 0, err
	}
	if uint64(t) >= uint64(len(c.types)) {
		return 0, errorf(off, "%s %d out of range (%d types)", what, t, len(c.types))
	}
	return t, nil
}

// tag reads a tag: a zero attribute byte and a type index.
func (r *reader) tag() (uint32, error) {
	off := r.off()
	attr, err := r.byte("tag attribute")
	if err != nil {
		return 0, err
	}
	if attr != 0 {
		return 0, errorf(off, "unsupported tag attribute %d", attr)
	}
	return r.u32("tag type index")
}

// wazeroLimits reads limits as wazero's decodeLimitsType does: flags 0 to
// 3 (bit 0: a maximum follows, bit 1: shared) and 32-bit bounds.
func (r *reader) wazeroLimits(what string) error {
	_, _, err := r.wazeroLimitsValues(what)
	return err
}

// wazeroLimitsValues is wazeroLimits returning the minimum and maximum
// (math.MaxUint32+1 when there is none); shared limits are an error.
func (r *reader) wazeroLimitsValues(what string) (min, max uint64, err error) {
	off := r.off()
	flags, err := r.byte(what + " flags")
	if err != nil {
		return 0, 0, err
	}
	if flags > 3 {
		return 0, 0, errorf(off, "unsupported %s flags 0x%02x", what, flags)
	}
	v, err := r.u32(what + " minimum")
	if err != nil {
		return 0, 0, err
	}
	min, max = uint64(v), math.MaxUint32+1
	if flags&1 != 0 {
		if v, err = r.u32(what + " maximum"); err != nil {
			return 0, 0, err
		}
		max = uint64(v)
	}
	return min, max, nil
}

// table reads a table type as wazero's decodeTable does and adds its
// minimum size to the total.
func (c *limitChecker) table(r *reader) error {
	off := r.off()
	if c.tables >= maxTables {
		return limitf(off, "more than %d tables", maxTables)
	}
	c.tables++
	b, err := r.byte("table type")
	if err != nil {
		return err
	}
	withInit := b == 0x40
	if withInit {
		if b, err = r.byte("table type reserved byte"); err != nil {
			return err
		}
		if b != 0 {
			return errorf(r.off()-1, "table type reserved byte 0x%02x", b)
		}
		if b, err = r.byte("table element type"); err != nil {
			return err
		}
	}
	if b == 0x63 || b == 0x64 {
		if err := r.wazeroHeapType("table element type"); err != nil {
			return err
		}
	}
	limOff := r.off()
	if flags := r.peek(); flags == 2 || flags == 3 {
		return errorf(limOff, "shared table")
	}
	min, max, err := r.wazeroLimitsValues("table limits")
	if err != nil {
		return err
	}
	if min > maxTableSize {
		return limitf(limOff, "table minimum size %d exceeds the limit of %d", min, maxTableSize)
	}
	if max < min {
		return errorf(limOff, "table maximum size %d is below the minimum %d", max, min)
	}
	if c.tableTotal += min; c.tableTotal > maxTotalTableSize {
		return limitf(limOff, "tables have %d entries in all, more than the limit of %d", c.tableTotal, maxTotalTableSize)
	}
	if withInit {
		return c.constExpr(r)
	}
	return nil
}

// peek returns the next byte without reading it, or 0 at the end.
func (r *reader) peek() byte {
	if r.pos < len(r.buf) {
		return r.buf[r.pos]
	}
	return 0
}

// wazeroGlobalType reads a global type as wazero's decodeGlobalType does.
func (r *reader) wazeroGlobalType() error {
	if err := r.wazeroValType("global value type"); err != nil {
		return err
	}
	off := r.off()
	mut, err := r.byte("global mutability")
	if err != nil {
		return err
	}
	if mut > 1 {
		return errorf(off, "bad global mutability %d", mut)
	}
	return nil
}

// constExpr reads a constant expression (wazeroConstExpr), telling
// c.funcRef the function every ref.func in it names.
func (c *limitChecker) constExpr(r *reader) error { return r.wazeroConstExpr(c.funcRef) }

// wazeroConstExpr reads a constant expression as wazero's
// decodeConstantExpression does (which differs from the spec: ref.null
// takes one byte or an unsigned LEB128, the 0xfd sub-opcode is one byte).
// ref, when not nil, is called with the index every ref.func names.
func (r *reader) wazeroConstExpr(ref func(idx uint32)) error {
	for {
		off := r.off()
		op, err := r.byte("constant expression")
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41:
			err = r.s32("i32.const immediate")
		case 0x42:
			err = r.s64("i64.const immediate")
		case 0x43:
			_, err = r.bytes(4, "f32.const immediate")
		case 0x44:
			_, err = r.bytes(8, "f64.const immediate")
		case 0x23:
			_, err = r.u32("global.get index")
		case 0xd2:
			var idx uint32
			if idx, err = r.u32("ref.func index"); err == nil && ref != nil {
				ref(idx)
			}
		case 0xd0:
			if t := r.peek(); t == 0x70 || t == 0x6f || t == 0x69 {
				r.pos++
			} else {
				_, err = r.u32("ref.null type")
			}
		case 0xfd:
			var sub byte
			if sub, err = r.byte("SIMD opcode"); err == nil {
				if sub != 0x0c {
					return errorf(off, "unsupported SIMD opcode %d in constant expression", sub)
				}
				_, err = r.bytes(16, "v128.const immediate")
			}
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const
		default:
			return errorf(off, "unsupported opcode 0x%02x in constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

// functionSection records the type of every defined function.
func (c *limitChecker) functionSection(r *reader) error {
	n, err := r.limitCount("function count", 1, maxFunctions)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		t, err := c.typeIndex(r, "function type index")
		if err != nil {
			return err
		}
		c.funcTypes = append(c.funcTypes, t)
	}
	return nil
}

// tableSection checks the tables.
func (c *limitChecker) tableSection(r *reader) error {
	n, err := r.limitCount("table count", 3, maxTables)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := c.table(r); err != nil {
			return err
		}
	}
	return nil
}

// memorySection checks the memories. wazero rejects more than one before
// allocating anything.
func (c *limitChecker) memorySection(r *reader) error {
	off := r.off()
	n, err := r.u32("memory count")
	if err != nil {
		return err
	}
	if n > 1 {
		return errorf(off, "%d memories; wazero supports one", n)
	}
	if n == 1 {
		return r.wazeroLimits("memory limits")
	}
	return nil
}

// tagSection records the type of every defined tag.
func (c *limitChecker) tagSection(r *reader) error {
	n, err := r.limitCount("tag count", 2, maxTags)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		t, err := r.tag()
		if err != nil {
			return err
		}
		c.tagTypes = append(c.tagTypes, t)
	}
	return nil
}

// globalSection checks the globals.
func (c *limitChecker) globalSection(r *reader) error {
	n, err := r.limitCount("global count", 3, maxGlobals)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.wazeroGlobalType(); err != nil {
			return err
		}
		if err := c.constExpr(r); err != nil {
			return err
		}
	}
	return nil
}

// exportSection checks the exports.
func (c *limitChecker) exportSection(r *reader) error {
	n, err := r.limitCount("export count", 3, maxExports)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.skipName("export name"); err != nil {
			return err
		}
		off := r.off()
		kind, err := r.byte("export kind")
		if err != nil {
			return err
		}
		if kind > 4 {
			return errorf(off, "unknown export kind %d", kind)
		}
		if _, err := r.u32("export index"); err != nil {
			return err
		}
	}
	return nil
}

// elementSection checks the element segments and their initializer
// vectors, decoded as wazero's decodeElementSegment does.
func (c *limitChecker) elementSection(r *reader) error {
	n, err := r.count("element segment count", 3)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		off := r.off()
		prefix, err := r.u32("element segment prefix")
		if err != nil {
			return err
		}
		if prefix > 7 {
			return errorf(off, "unknown element segment prefix %d", prefix)
		}
		if prefix == 2 || prefix == 6 {
			if _, err := r.u32("element table index"); err != nil {
				return err
			}
		}
		if prefix&1 == 0 { // active: an offset expression
			if err := c.constExpr(r); err != nil {
				return err
			}
		}
		exprs := prefix&4 != 0
		switch {
		case prefix&3 != 0 && !exprs: // 1, 2, 3: element kind
			kOff := r.off()
			kind, err := r.byte("element kind")
			if err != nil {
				return err
			}
			if kind != 0 {
				return errorf(kOff, "element kind 0x%02x", kind)
			}
		case prefix&3 != 0 && exprs: // 5, 6, 7: reference type
			tOff := r.off()
			t, err := r.byte("element reference type")
			if err != nil {
				return err
			}
			switch t {
			case 0x70, 0x6f:
			case 0x63, 0x64:
				if err := r.wazeroHeapType("element reference type"); err != nil {
					return err
				}
			default:
				return errorf(tOff, "unsupported element reference type 0x%02x", t)
			}
		}
		m, err := r.limitCount("element count", 1, maxTableInit)
		if err != nil {
			return err
		}
		if prefix == 1 || prefix == 5 { // passive: copied into every instance
			c.passiveElems += uint64(m)
		}
		for j := uint32(0); j < m; j++ {
			if exprs {
				err = c.constExpr(r)
			} else {
				fOff := r.off()
				var f uint32
				if f, err = r.u32("element function index"); err == nil && f >= 1<<27 {
					return limitf(fOff, "element function index %d exceeds wazero's maximum", f)
				}
				if err == nil && c.funcRef != nil {
					c.funcRef(f)
				}
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// dataSection checks the data segments and that their contents fit.
func (c *limitChecker) dataSection(r *reader) error {
	n, err := r.limitCount("data segment count", 2, maxDataSegments)
	if err != nil {
		return err
	}
	c.dataSegments = n
	for i := uint32(0); i < n; i++ {
		off := r.off()
		prefix, err := r.u32("data segment prefix")
		if err != nil {
			return err
		}
		switch prefix {
		case 0:
			err = c.constExpr(r)
		case 1:
		case 2:
			mOff := r.off()
			var mem uint32
			if mem, err = r.u32("data memory index"); err == nil {
				if mem != 0 {
					return errorf(mOff, "data memory index %d", mem)
				}
				err = c.constExpr(r)
			}
		default:
			return errorf(off, "unknown data segment prefix %d", prefix)
		}
		if err != nil {
			return err
		}
		size, err := r.u32("data segment size")
		if err != nil {
			return err
		}
		if _, err := r.bytes(int(size), "data segment"); err != nil {
			return err
		}
	}
	return nil
}

// codeSection checks every function body: its size, its locals and the
// value slots its instructions may use.
func (c *limitChecker) codeSection(r *reader) error {
	n, err := r.count("function body count", 3)
	if err != nil {
		return err
	}
	defined := uint32(len(c.funcTypes)) - c.imported
	if n != defined {
		return errorf(r.off(), "%d function bodies for %d declared functions", n, defined)
	}
	c.codeCount = n
	for i := uint32(0); i < n; i++ {
		off := r.off()
		size, err := r.u32("function body size")
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return errorf(off, "function body %d size %d exceeds the %d remaining bytes", i, size, r.remaining())
		}
		if size > maxFunctionSize {
			return limitf(off, "function body %d size %d exceeds the limit of %d", i, size, maxFunctionSize)
		}
		body := &reader{buf: r.buf[r.pos : r.pos+int(size)], base: r.off()}
		r.pos += int(size)
		if err := c.body(body, c.types[c.funcTypes[c.imported+i]]); err != nil {
			return err
		}
		if c.bodyCtl > maxFunctionControl {
			return limitf(off, "function body %d has %d blocks and branches, more than the limit of %d: the compiler's time grows with the square of that number (split the function)",
				i, c.bodyCtl, maxFunctionControl)
		}
		if c.ctlCost += c.bodyCtl * c.bodyCtl; c.ctlCost > maxControlCost {
			return limitf(off, "the functions up to body %d have so many blocks and branches that compiling the module would take too long (the sum over functions of their number squared passes %d; the largest Go guests reach a tenth of that)",
				i, uint64(maxControlCost))
		}
	}
	return nil
}

// body checks one function body of type a.
func (c *limitChecker) body(r *reader, a arity) error {
	off := r.off()
	n, err := r.count("local declaration count", 2)
	if err != nil {
		return err
	}
	locals := uint64(a.params)
	for i := uint32(0); i < n; i++ {
		cOff := r.off()
		k, err := r.u32("local count")
		if err != nil {
			return err
		}
		if locals += uint64(k); locals > maxFunctionLocals {
			return limitf(cOff, "function has more than %d parameters and locals", maxFunctionLocals)
		}
		if err := r.wazeroValType("local type"); err != nil {
			return err
		}
	}
	if err := c.spend(off, locals+uint64(a.results), "function parameters, results and locals"); err != nil {
		return err
	}
	code := &reader{buf: r.buf[r.pos:], base: r.off()}
	slots, ok := c.bodySlots(code, a)
	if !ok {
		slots = c.coarseSlots(code.buf)
	}
	return c.spend(off, slots, "function body instructions")
}

// spend charges n value slots to the module's budget.
func (c *limitChecker) spend(off int, n uint64, what string) error {
	c.slots += n
	if c.slots > c.slotLimit {
		return limitf(off, "%s use %d value slots in all, more than the %d allowed for a module of %d bytes", what, c.slots, c.slotLimit, len(c.wasm))
	}
	return nil
}

// coarseSlots returns an upper bound on the value slots that the
// instructions of code (a function body after its locals) carry beyond one
// per instruction, for bodies bodySlots cannot decode. It charges every
// byte that could start an instruction referring to a function type (call,
// call_indirect, call_ref and their return_ variants) the type's
// parameters and results; every byte that could start a block, loop, if or
// try_table with a type index twice the parameters and three times the
// results (for its else and end); every byte that could start a branch
// (br, br_if, br_on_null, br_on_non_null, return, every br_table target and
// try_table catch clause) the largest arity of any type; every byte that
// could start an instruction naming a tag the tag's parameters. Every byte
// offset is considered, so the bound holds however wazero's validator and
// compiler split the body into instructions.
func (c *limitChecker) coarseSlots(code []byte) uint64 {
	typeSlots := func(t uint64, ok bool) uint64 {
		if !ok || t >= uint64(len(c.types)) {
			return 0
		}
		return uint64(c.types[t].params) + uint64(c.types[t].results)
	}
	// A block's else and end carry its parameters and results again.
	blockSlots := func(t uint64, ok bool) uint64 {
		if !ok || t >= uint64(len(c.types)) {
			return 0
		}
		return 2*uint64(c.types[t].params) + 3*uint64(c.types[t].results)
	}
	branch := max64(c.maxArity, 1)
	var total uint64
	for p := 0; p < len(code); p++ {
		imm := code[p+1:]
		switch code[p] {
		case 0x10, 0x12: // call, return_call
			if f, _, ok := wazeroU32(imm); ok && uint64(f) < uint64(len(c.funcTypes)) {
				total += typeSlots(uint64(c.funcTypes[f]), true)
			}
		case 0x11, 0x13, 0x14, 0x15: // call_indirect, return_call_indirect, call_ref, return_call_ref
			t, _, ok := wazeroU32(imm)
			total += typeSlots(uint64(t), ok)
		case 0x02, 0x03, 0x04: // block, loop, if
			t, _, ok := wazeroS33(imm)
			total += blockSlots(uint64(t), ok && t >= 0)
		case 0x1f: // try_table: block type, catch clauses
			t, k, ok := wazeroS33(imm)
			total += blockSlots(uint64(t), ok && t >= 0) + branch
			if ok {
				if n, _, ok := wazeroU32(imm[k:]); ok {
					total += branch * min64(uint64(n), uint64(len(imm)))
				}
			}
		case 0x0c, 0x0d, 0x0f, 0xd5, 0xd6: // br, br_if, return, br_on_null, br_on_non_null
			total += branch
		case 0x0e: // br_table: n targets and a default
			if n, _, ok := wazeroU32(imm); ok {
				total += branch * (1 + min64(uint64(n), uint64(len(imm))))
			}
		}
		if len(c.tagTypes) > 0 {
			switch code[p] {
			case 0x00, 0x01, 0x08: // catch, catch_ref, throw
				if tag, _, ok := wazeroU32(imm); ok && uint64(tag) < uint64(len(c.tagTypes)) {
					if t := uint64(c.tagTypes[tag]); t < uint64(len(c.types)) {
						total += uint64(c.types[t].params)
					}
				}
			}
		}
	}
	return total
}

// label is an open block of a function body: label is the number of
// values a branch to it carries, params and results its type's arity.
type label struct{ label, params, results uint32 }

// bodySlots decodes the instructions of a function body of type fn (r
// covers the body after its locals) and returns the value slots they carry
// beyond one per instruction: the parameters and results of every type an
// instruction refers to (calls, blocks with a type index), the values every
// branch, else, end and return carries, the parameters of thrown and caught
// tags. It reports false when the body does not decode (instruction
// decoding is shared with InstrumentLoops, which refuses encodings that
// wazero could decode differently); CheckLimits then uses coarseSlots.
func (c *limitChecker) bodySlots(r *reader, fn arity) (uint64, bool) {
	labels := append(c.labels[:0], label{uint32(fn.results), 0, uint32(fn.results)})
	defer func() { c.labels = labels[:0] }()
	typeSlots := func(t uint32) (uint64, bool) {
		if uint64(t) >= uint64(len(c.types)) {
			return 0, false
		}
		return uint64(c.types[t].params) + uint64(c.types[t].results), true
	}
	target := func(l uint32) (uint64, bool) {
		if uint64(l) >= uint64(len(labels)) {
			return 0, false
		}
		return uint64(labels[len(labels)-1-int(l)].label), true
	}
	tagSlots := func(tag uint32) (uint64, bool) {
		if uint64(tag) >= uint64(len(c.tagTypes)) || uint64(c.tagTypes[tag]) >= uint64(len(c.types)) {
			return 0, false
		}
		return uint64(c.types[c.tagTypes[tag]].params), true
	}
	var total uint64
	c.bodyCtl = 0
	for len(labels) > 0 {
		op, err := r.byte("opcode")
		if err != nil {
			return 0, false
		}
		var n uint64
		ok := true
		switch op {
		case 0x02, 0x03, 0x04, 0x1f: // block, loop, if, try_table
			var a arity
			if a, err = c.blockArity(r); err != nil {
				return 0, false
			}
			n = uint64(a.params) + uint64(a.results)
			l := label{uint32(a.results), uint32(a.params), uint32(a.results)}
			if op == 0x03 {
				l.label = uint32(a.params)
			}
			if op == 0x1f {
				var k uint32
				if k, err = r.count("catch clause count", 2); err != nil {
					return 0, false
				}
				for i := uint32(0); i < k && ok; i++ {
					var kind byte
					if kind, err = r.byte("catch clause kind"); err != nil || kind > 3 {
						return 0, false
					}
					var m uint64
					if kind < 2 {
						var tag uint32
						if tag, err = r.u32("catch tag index"); err != nil {
							return 0, false
						}
						m, ok = tagSlots(tag)
						n += m
					}
					var l uint32
					if l, err = r.u32("catch label"); err != nil {
						return 0, false
					}
					if ok { // the label is counted from outside the try_table
						m, ok = target(l)
						n += m
					}
				}
			}
			labels = append(labels, l)
			c.bodyCtl++
		case 0x05: // else: the else block takes the parameters again
			c.bodyCtl++
			n = uint64(labels[len(labels)-1].params) + uint64(labels[len(labels)-1].results)
		case 0x0b: // end
			n = uint64(labels[len(labels)-1].results)
			labels = labels[:len(labels)-1]
		case 0x0c, 0x0d, 0xd5, 0xd6: // br, br_if, br_on_null, br_on_non_null
			var l uint32
			if l, err = r.u32("label"); err == nil {
				n, ok = target(l)
			}
			c.bodyCtl++
		case 0x0e: // br_table
			var k uint32
			if k, err = r.count("br_table label count", 1); err != nil {
				return 0, false
			}
			for i := uint32(0); i <= k && ok && err == nil; i++ {
				var l uint32
				var m uint64
				if l, err = r.u32("br_table label"); err == nil {
					m, ok = target(l)
					n += m
				}
			}
			c.bodyCtl++ // one, whatever its targets: a br_table of 10,000 compiles in 0.2 s
		case 0x0f: // return
			n = uint64(fn.results)
		case 0x10, 0x12: // call, return_call
			var f uint32
			if f, err = r.u32("function index"); err == nil {
				if ok = uint64(f) < uint64(len(c.funcTypes)); ok {
					n, ok = typeSlots(c.funcTypes[f])
				}
			}
		case 0x11, 0x13: // call_indirect, return_call_indirect: type, table
			var t uint32
			if t, err = r.u32("type index"); err == nil {
				if n, ok = typeSlots(t); ok {
					_, err = r.u32("table index")
				}
			}
		case 0x14, 0x15: // call_ref, return_call_ref
			var t uint32
			if t, err = r.u32("type index"); err == nil {
				n, ok = typeSlots(t)
			}
		case 0x08: // throw
			var tag uint32
			if tag, err = r.u32("tag index"); err == nil {
				n, ok = tagSlots(tag)
			}
		default:
			err = r.skipImmediates(op)
		}
		if err != nil || !ok {
			return 0, false
		}
		total += n
	}
	return total, r.remaining() == 0
}

// blockArity reads a block type and returns its arity: a type index names
// a function type, any other block type has no parameters and at most one
// result.
func (c *limitChecker) blockArity(r *reader) (arity, error) {
	start := r.pos
	v, err := r.leb("block type", 33, true)
	if err != nil {
		return arity{}, err
	}
	switch t := int64(v); {
	case t >= 0:
		if t >= int64(len(c.types)) {
			return arity{}, r.fail("block type %d out of range", t)
		}
		return c.types[t], nil
	case t == 0x40-0x80:
		return arity{}, nil
	}
	r.pos = start
	return arity{results: 1}, r.blockType()
}

// wazeroU32 decodes an unsigned LEB128 at the start of b as wazero's
// leb128.LoadUint32 does and returns it with its length.
func wazeroU32(b []byte) (uint32, int, bool) {
	var v uint32
	for i := 0; i < 5 && i < len(b); i++ {
		if b[i] < 0x80 {
			if i == 4 && b[i]&0xf0 != 0 {
				return 0, 0, false
			}
			return v | uint32(b[i])<<(7*i), i + 1, true
		}
		v |= uint32(b[i]&0x7f) << (7 * i)
	}
	return 0, 0, false
}

// wazeroS33 decodes a signed 33-bit LEB128 at the start of b as wazero's
// leb128.DecodeInt33AsInt64 does (reading at most 5 bytes; the last may
// carry a continuation bit) and returns it with its length.
func wazeroS33(b []byte) (int64, int, bool) {
	var v int64
	var last byte
	n := 0
	for shift := 0; shift < 35; shift += 7 {
		if n >= len(b) {
			return 0, 0, false
		}
		last = b[n]
		n++
		v |= int64(last&0x7f) << shift
		if last&0x80 == 0 {
			break
		}
	}
	if shift := 7 * n; shift < 33 && last&0x40 != 0 {
		v |= -1 << shift
	}
	v &= 1<<33 - 1
	if v&(1<<32) != 0 {
		v -= 1 << 33
	}
	if n == 5 {
		if unused := last & 0x20; (v < 0 && unused != 0x20) || (v >= 0 && unused != 0) {
			return 0, 0, false
		}
	}
	return v, n, true
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func min64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}
