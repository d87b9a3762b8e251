package wasmbin

import (
	"math"
	"unicode/utf8"
)

// Section ids of the WebAssembly binary format.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secCode      = 10
	externGlobal = 3
)

// sectionRank gives the required relative order of the non-custom sections
// (tag, 13, sits between memory and global; data count, 12, between element
// and code). A zero rank means the id is unknown.
var sectionRank = [...]int{
	1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13,
}

// module is what ExportMutableGlobals and InstrumentLoops need to know about
// a parsed binary. All offsets index the original input.
type module struct {
	importedGlobals uint32
	totalGlobals    uint32
	definedGlobals  uint32 // entries in the global section
	// mutable lists the indices of mutable globals defined by the module,
	// in increasing order.
	mutable []uint32

	hasExport     bool
	exportStart   int // offset of the export section's id byte
	exportEntries int // offset of the first export entry (after the count)
	exportEnd     int // offset just past the export section
	exportCount   uint32
	// globalNames maps a global index to its first export name.
	globalNames map[uint32]string
	// exportNames holds every export name, of any kind.
	exportNames map[string]struct{}

	// insertAt is where a new export section goes: just past the last
	// non-custom section that must precede the export section.
	insertAt int

	hasGlobal     bool
	globalStart   int // offset of the global section's id byte
	globalBody    int // offset of the global section's payload
	globalEntries int // offset of the first global entry (after the count)
	globalEnd     int // offset just past the global section
	// globalInsertAt is where a new global section goes: just past the
	// last non-custom section that must precede the global section.
	globalInsertAt int

	hasCode   bool
	codeStart int // offset of the code section's id byte
	codeBody  int // offset of the code section's payload
	codeEnd   int // offset just past the code section

	// The type and function sections are only framed by parse; their
	// payloads, [typeBody, typeEnd) and [funcBody, funcEnd), are decoded
	// by InstrumentLoops when it needs a function's parameter count.
	hasType, hasFunc  bool
	typeBody, typeEnd int
	funcBody, funcEnd int

	hasStart bool
	// startBody and startEnd frame the start section's payload, decoded
	// by FindStateWrite only.
	startBody, startEnd int
	// importedFuncs counts function imports: defined functions are
	// numbered from it.
	importedFuncs uint32
	// goBuildID reports a custom section named "go:buildid", which the Go
	// toolchain's linker writes into every module it links.
	goBuildID bool

	// The table section is only framed by parse; its payload,
	// [tableBody, tableEnd), is decoded by InstrumentLoops when a body has
	// a table instruction (hasTable64). importedTable64 reports an
	// imported table with 64-bit limits.
	hasTable            bool
	tableBody, tableEnd int
	importedTable64     bool
	// importedTables counts table imports; importedTableAt is the offset
	// of the first one's descriptor.
	importedTables  uint32
	importedTableAt int

	// The element section is only framed by parse; TableBytes decodes
	// its payload, [elemBody, elemEnd).
	hasElement        bool
	elemBody, elemEnd int

	// importedMemories counts memory imports; mem64 reports whether the
	// first imported memory has 64-bit limits.
	importedMemories uint32
	mem64            bool
	hasMemory        bool
	memoryStart      int // offset of the memory section's id byte
	memoryBody       int // offset of the memory section's payload
	memoryEnd        int // offset just past the memory section
	// memoryInsertAt is where a new memory section goes.
	memoryInsertAt int
}

// parse checks the header and section framing of wasm and decodes the
// import, global and export sections. Other sections are only framed.
func parse(wasm []byte) (*module, error) {
	r := &reader{buf: wasm}
	magic, err := r.bytes(4, "magic number")
	if err != nil {
		return nil, err
	}
	if string(magic) != "\x00asm" {
		return nil, errorf(0, "bad magic number %x", magic)
	}
	version, err := r.bytes(4, "version")
	if err != nil {
		return nil, err
	}
	if string(version) != "\x01\x00\x00\x00" {
		return nil, errorf(4, "unsupported version %x", version)
	}
	m := &module{
		globalNames:    map[uint32]string{},
		exportNames:    map[string]struct{}{},
		insertAt:       r.pos,
		globalInsertAt: r.pos,
		memoryInsertAt: r.pos,
	}
	lastRank := 0
	for r.remaining() > 0 {
		start := r.pos
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			return nil, err
		}
		if int64(size) > int64(r.remaining()) {
			return nil, errorf(start, "section %d size %d exceeds the %d remaining bytes", id, size, r.remaining())
		}
		payload := r.pos
		end := payload + int(size)
		r.pos = end
		if id != secCustom {
			if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
				return nil, errorf(start, "unknown section id %d", id)
			}
			rank := sectionRank[id]
			if rank <= lastRank {
				return nil, errorf(start, "section id %d is duplicated or out of order", id)
			}
			lastRank = rank
			if rank < sectionRank[secExport] {
				m.insertAt = end
			}
			if rank < sectionRank[secGlobal] {
				m.globalInsertAt = end
			}
			if rank < sectionRank[secMemory] {
				m.memoryInsertAt = end
			}
		}
		sr := &reader{buf: wasm[payload:end], base: payload}
		switch id {
		case secCustom:
			var name string
			name, err = sr.name("custom section name")
			m.goBuildID = m.goBuildID || name == goBuildIDSection
			sr.pos = len(sr.buf) // the contents are opaque
		case secImport:
			err = m.parseImports(sr)
		case secGlobal:
			m.hasGlobal, m.globalStart, m.globalBody, m.globalEnd = true, start, payload, end
			err = m.parseGlobals(sr)
		case secExport:
			m.hasExport, m.exportStart, m.exportEnd = true, start, end
			err = m.parseExports(sr)
		case secCode:
			m.hasCode, m.codeStart, m.codeBody, m.codeEnd = true, start, payload, end
			sr.pos = len(sr.buf) // decoded by InstrumentLoops only
		case secStart:
			m.hasStart, m.startBody, m.startEnd = true, payload, end
			sr.pos = len(sr.buf) // decoded by FindStateWrite only
		case secType:
			m.hasType, m.typeBody, m.typeEnd = true, payload, end
			sr.pos = len(sr.buf) // decoded by InstrumentLoops only
		case secFunction:
			m.hasFunc, m.funcBody, m.funcEnd = true, payload, end
			sr.pos = len(sr.buf) // decoded by InstrumentLoops only
		case secMemory:
			m.hasMemory, m.memoryStart, m.memoryBody, m.memoryEnd = true, start, payload, end
			sr.pos = len(sr.buf) // decoded by InstrumentLoops only
		case secTable:
			m.hasTable, m.tableBody, m.tableEnd = true, payload, end
			sr.pos = len(sr.buf) // decoded by InstrumentLoops and TableBytes
		case secElement:
			m.hasElement, m.elemBody, m.elemEnd = true, payload, end
			sr.pos = len(sr.buf) // decoded by TableBytes only
		default:
			sr.pos = len(sr.buf)
		}
		if err != nil {
			return nil, err
		}
		if sr.remaining() != 0 {
			return nil, sr.fail("section %d has %d trailing bytes", id, sr.remaining())
		}
	}
	return m, nil
}

// count reads a vector length and rejects lengths that cannot fit in the
// remaining bytes given that each element takes at least minSize bytes.
func (r *reader) count(what string, minSize int) (uint32, error) {
	off := r.off()
	n, err := r.u32(what)
	if err != nil {
		return 0, err
	}
	if int64(n)*int64(minSize) > int64(r.remaining()) {
		return 0, errorf(off, "%s %d exceeds the %d remaining bytes", what, n, r.remaining())
	}
	return n, nil
}

// name reads a length-prefixed UTF-8 name.
func (r *reader) name(what string) (string, error) {
	off := r.off()
	n, err := r.u32(what + " length")
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n), what)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errorf(off, "%s is not valid UTF-8", what)
	}
	return string(b), nil
}

// parseImports counts imported globals, checking every import descriptor.
func (m *module) parseImports(r *reader) error {
	n, err := r.count("import count", 4)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.name("import module name"); err != nil {
			return err
		}
		if _, err := r.name("import name"); err != nil {
			return err
		}
		off := r.off()
		kind, err := r.byte("import kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0: // func: type index
			if _, err = r.u32("function type index"); err == nil {
				m.importedFuncs++
			}
		case 1: // table: reftype + limits (bit 2: table64)
			if m.importedTables == 0 {
				m.importedTableAt = off
			}
			m.importedTables++
			if err = r.refType("table element type"); err == nil {
				if r.remaining() > 0 && r.buf[r.pos]&4 != 0 {
					m.importedTable64 = true
				}
				err = r.limits("table limits", 0x05)
			}
		case 2: // memory: limits (bit 1: shared, bit 2: memory64)
			if r.remaining() > 0 && m.importedMemories == 0 {
				m.mem64 = r.buf[r.pos]&4 != 0
			}
			if err = r.limits("memory limits", 0x07); err == nil {
				m.importedMemories++
			}
		case externGlobal:
			if _, err = r.globalType(); err == nil {
				m.importedGlobals++
			}
		case 4: // tag: attribute + type index
			var attr byte
			if attr, err = r.byte("tag attribute"); err == nil {
				if attr != 0 {
					return r.fail("unsupported tag attribute %d", attr)
				}
				_, err = r.u32("tag type index")
			}
		default:
			return errorf(off, "unknown import kind %d", kind)
		}
		if err != nil {
			return err
		}
	}
	m.totalGlobals = m.importedGlobals
	return nil
}

// limits reads a limits flags byte, a minimum and an optional maximum. Flag
// bit 0 announces a maximum, bit 1 a shared memory, bit 2 64-bit bounds.
// Flags outside allowed are rejected.
func (r *reader) limits(what string, allowed byte) error {
	off := r.off()
	flags, err := r.byte(what + " flags")
	if err != nil {
		return err
	}
	if flags&^allowed != 0 {
		return errorf(off, "unsupported %s flags 0x%02x", what, flags)
	}
	n := 1 + int(flags&1)
	for i := 0; i < n; i++ {
		if flags&4 != 0 {
			_, err = r.u64(what)
		} else {
			_, err = r.u32(what)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// refType reads a funcref or externref type byte.
func (r *reader) refType(what string) error {
	off := r.off()
	t, err := r.byte(what)
	if err != nil {
		return err
	}
	if t != 0x70 && t != 0x6f {
		return errorf(off, "unsupported %s 0x%02x", what, t)
	}
	return nil
}

// globalType reads a value type and mutability byte and reports whether the
// global is mutable.
func (r *reader) globalType() (bool, error) {
	off := r.off()
	t, err := r.byte("global value type")
	if err != nil {
		return false, err
	}
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
	default:
		return false, errorf(off, "unsupported global value type 0x%02x", t)
	}
	off = r.off()
	mut, err := r.byte("global mutability")
	if err != nil {
		return false, err
	}
	if mut > 1 {
		return false, errorf(off, "bad global mutability %d", mut)
	}
	return mut == 1, nil
}

// parseGlobals records the index of every mutable defined global.
func (m *module) parseGlobals(r *reader) error {
	n, err := r.count("global count", 3)
	if err != nil {
		return err
	}
	total := uint64(m.importedGlobals) + uint64(n)
	if total > math.MaxUint32 {
		return r.fail("global count %d overflows the global index space", n)
	}
	m.totalGlobals = uint32(total)
	m.definedGlobals = n
	m.globalEntries = r.off()
	for i := uint32(0); i < n; i++ {
		mut, err := r.globalType()
		if err != nil {
			return err
		}
		if err := r.constExpr(); err != nil {
			return err
		}
		if mut {
			m.mutable = append(m.mutable, m.importedGlobals+i)
		}
	}
	return nil
}

// constExpr skips a constant expression up to and including its end opcode.
func (r *reader) constExpr() error {
	for {
		off := r.off()
		op, err := r.byte("constant expression")
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			err = r.s32("i32.const immediate")
		case 0x42: // i64.const
			err = r.s64("i64.const immediate")
		case 0x43: // f32.const
			_, err = r.bytes(4, "f32.const immediate")
		case 0x44: // f64.const
			_, err = r.bytes(8, "f64.const immediate")
		case 0x23: // global.get
			_, err = r.u32("global.get index")
		case 0xd2: // ref.func
			_, err = r.u32("ref.func index")
		case 0xd0: // ref.null
			err = r.refType("ref.null type")
		case 0xfd: // SIMD prefix: only v128.const is constant
			var sub uint32
			if sub, err = r.u32("SIMD opcode"); err == nil {
				if sub != 0x0c {
					return errorf(off, "unsupported SIMD opcode %d in constant expression", sub)
				}
				_, err = r.bytes(16, "v128.const immediate")
			}
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const {i32,i64}.{add,sub,mul}
		default:
			return errorf(off, "unsupported opcode 0x%02x in constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

// parseExports records every export name and the first name of each
// exported global.
func (m *module) parseExports(r *reader) error {
	n, err := r.count("export count", 3)
	if err != nil {
		return err
	}
	m.exportCount = n
	m.exportEntries = r.off()
	for i := uint32(0); i < n; i++ {
		off := r.off()
		name, err := r.name("export name")
		if err != nil {
			return err
		}
		if _, dup := m.exportNames[name]; dup {
			return errorf(off, "duplicate export name %q", name)
		}
		m.exportNames[name] = struct{}{}
		kindOff := r.off()
		kind, err := r.byte("export kind")
		if err != nil {
			return err
		}
		if kind > 4 {
			return errorf(kindOff, "unknown export kind %d", kind)
		}
		idxOff := r.off()
		idx, err := r.u32("export index")
		if err != nil {
			return err
		}
		if kind != externGlobal {
			continue
		}
		if idx >= m.totalGlobals {
			return errorf(idxOff, "exported global index %d out of range (%d globals)", idx, m.totalGlobals)
		}
		if _, seen := m.globalNames[idx]; !seen {
			m.globalNames[idx] = name
		}
	}
	return nil
}
