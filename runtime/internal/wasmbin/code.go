package wasmbin

import "fmt"

// This file decodes function bodies instruction by instruction, just enough
// to find instruction boundaries and loop headers. It does no type checking:
// the runtime validates the instrumented module. The decoding must agree
// with wazero's on every module wazero accepts, or InstrumentLoops could
// insert its check inside an immediate, or miss a loop that wazero sees;
// see DESIGN.md for where wazero deviates from the spec and how this
// decoder copes.

// imm classifies what follows a one-byte opcode.
type imm uint8

const (
	immUnknown  imm = iota // not an instruction this package knows
	immNone                // no immediates
	immEnd                 // end: closes a block or the body
	immBlock               // block, if: a block type
	immLoop                // loop: a block type, then the stop check goes in
	immTryTable            // try_table: a block type and catch clauses
	immIndex               // one u32 index (or label, or memory index)
	immIndex2              // two u32 indices
	immBrTable             // a vector of labels and a default label
	immMemArg              // a memory argument
	immI32                 // a signed 32-bit LEB128
	immI64                 // a signed 64-bit LEB128
	immF32                 // 4 bytes
	immF64                 // 8 bytes
	immSelect              // a vector of value types
	immHeapType            // a heap type (ref.null)
	immMisc                // the 0xfc prefix
	immSIMD                // the 0xfd prefix
	immAtomic              // the 0xfe prefix
)

// opcodeImm maps every one-byte opcode to its immediates.
var opcodeImm = func() (t [256]imm) {
	set := func(k imm, ops ...byte) {
		for _, op := range ops {
			t[op] = k
		}
	}
	span := func(k imm, lo, hi byte) {
		for op := int(lo); op <= int(hi); op++ {
			t[op] = k
		}
	}
	// Control.
	set(immNone, 0x00, 0x01, 0x05, 0x0a, 0x0f) // unreachable nop else throw_ref return
	set(immBlock, 0x02, 0x04)                  // block if
	set(immLoop, 0x03)
	set(immIndex, 0x08)         // throw tag
	set(immEnd, 0x0b)           // end
	set(immIndex, 0x0c)         // br
	set(immIndex, 0x0d)         // br_if
	set(immBrTable, 0x0e)       // br_table
	set(immIndex, 0x10)         // call
	set(immIndex2, 0x11)        // call_indirect type table
	set(immIndex, 0x12)         // return_call
	set(immIndex2, 0x13)        // return_call_indirect type table
	set(immIndex, 0x14)         // call_ref type
	set(immIndex, 0x15)         // return_call_ref type
	set(immTryTable, 0x1f)      // try_table
	set(immNone, 0x1a)          // drop
	set(immNone, 0x1b)          // select
	set(immSelect, 0x1c)        // select t*
	span(immIndex, 0x20, 0x26)  // local.get/set/tee global.get/set table.get/set
	span(immMemArg, 0x28, 0x3e) // loads and stores
	set(immIndex, 0x3f, 0x40)   // memory.size memory.grow: memory index
	set(immI32, 0x41)
	set(immI64, 0x42)
	set(immF32, 0x43)
	set(immF64, 0x44)
	span(immNone, 0x45, 0xc4) // numeric, including sign extension
	set(immHeapType, 0xd0)    // ref.null
	set(immNone, 0xd1)        // ref.is_null
	set(immIndex, 0xd2)       // ref.func
	set(immNone, 0xd4)        // ref.as_non_null
	set(immIndex, 0xd5, 0xd6) // br_on_null br_on_non_null
	set(immMisc, 0xfc)
	set(immSIMD, 0xfd)
	set(immAtomic, 0xfe)
	return t
}()

// simdHoles lists the unassigned SIMD opcodes below 256.
var simdHoles = [...]uint32{0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee}

// unsupported returns an error wrapping ErrUnsupportedInstruction that
// reports the absolute offset off.
func unsupported(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte offset %d", ErrUnsupportedInstruction, fmt.Sprintf(format, args...), off)
}

// bodyScan is what scanBody finds in one function body. Positions index
// the body (the reader's buf).
type bodyScan struct {
	decls   uint32 // local declarations
	declsAt int    // the first local declaration, just past their count
	locals  uint64 // locals declared
	entry   int    // the first instruction, past the locals
	// calls reports whether the body makes a call of any kind (call,
	// call_indirect, call_ref and their tail-call forms).
	calls bool
	loops []int // just past the block type of every loop, in order
	// bulk holds every instruction charged by its length (memory.init,
	// memory.copy, memory.fill, table.init, table.copy, table.fill), in
	// order.
	bulk []bulkOp
	// writeAt is the position of the body's first instruction that
	// changes a table or a segment (table.set, table.grow, table.fill,
	// table.copy, table.init, elem.drop, data.drop), -1 when it has
	// none; writeOp names it. See FindStateWrite.
	writeAt int
	writeOp string
	// watch lists up to 8 function indices, kept across bodies: refers
	// gets bit k when a call, return_call or ref.func of the body names
	// watch[k]. InstrumentLoops watches none.
	watch  []uint32
	refers uint8
}

// wrote records the instruction op at position at as the body's first
// state write, unless it has one already.
func (s *bodyScan) wrote(at int, op string) {
	if s.writeAt < 0 {
		s.writeAt, s.writeOp = at, op
	}
}

// referenced records a reference to function idx (call, return_call,
// ref.func).
func (s *bodyScan) referenced(idx uint32) {
	for k, w := range s.watch {
		if w == idx {
			s.refers |= 1 << k
		}
	}
}

// miscWrites names the 0xfc instructions that change a table or a
// segment, by sub-opcode.
var miscWrites = [...]string{9: "data.drop", 12: "table.init", 13: "elem.drop", 14: "table.copy", 15: "table.grow", 17: "table.fill"}

// scanBody decodes one function body (locals and expression; r covers
// exactly the body) into s, reusing the capacity of its slices.
//
// globals is the size of the module's global index space. global.get and
// global.set must name a global below it: an out-of-range index makes the
// module invalid, but it would become valid after the rewrite and name the
// stop global, letting the guest clear it (global.set) and escape the stop.
func scanBody(r *reader, s *bodyScan, globals uint32) error {
	*s = bodyScan{loops: s.loops[:0], bulk: s.bulk[:0], writeAt: -1, watch: s.watch}
	n, err := r.count("local declaration count", 2)
	if err != nil {
		return err
	}
	s.decls, s.declsAt = n, r.pos
	for i := uint32(0); i < n; i++ {
		k, err := r.u32("local count")
		if err != nil {
			return err
		}
		s.locals += uint64(k)
		if err := r.valType("local type"); err != nil {
			return err
		}
	}
	s.entry = r.pos
	for depth := 1; depth > 0; {
		if r.remaining() == 0 {
			return r.fail("function body ends inside %d unclosed blocks", depth)
		}
		at, off := r.pos, r.off()
		op := r.buf[r.pos]
		r.pos++
		if op >= 0x10 && op <= 0x15 {
			s.calls = true
		}
		switch opcodeImm[op] {
		case immUnknown:
			return unsupported(off, "opcode 0x%02x", op)
		case immNone:
		case immEnd:
			depth--
		case immBlock:
			err = r.blockType()
			depth++
		case immLoop:
			err = r.blockType()
			depth++
			s.loops = append(s.loops, r.pos)
		case immTryTable:
			err = r.tryTable()
			depth++
		case immIndex:
			var idx uint32
			idx, err = r.u32("index immediate")
			switch {
			case err != nil:
			case (op == 0x23 || op == 0x24) && idx >= globals:
				return errorf(off, "global index %d out of range (%d globals)", idx, globals)
			case op == 0x26:
				s.wrote(at, "table.set")
			case (op == 0x10 || op == 0x12 || op == 0xd2) && len(s.watch) > 0:
				s.referenced(idx)
			}
		case immBrTable:
			err = r.brTable()
		case immMisc:
			var sub uint32
			var mem0 bool
			if sub, mem0, err = r.miscOp(); err == nil {
				if int(sub) < len(miscWrites) && miscWrites[sub] != "" {
					s.wrote(at, miscWrites[sub])
				}
				switch sub {
				case 8, 10, 11: // memory.init, memory.copy, memory.fill
					if !mem0 {
						// The length's type would be that of a memory
						// other than memory 0 (multi-memory), which is
						// not decoded.
						return unsupported(off, "opcode 0xfc %d on a memory other than memory 0", sub)
					}
					s.bulk = append(s.bulk, bulkOp{at: at, sub: sub})
				case 12, 14, 17: // table.init, table.copy, table.fill
					s.bulk = append(s.bulk, bulkOp{at: at, sub: sub})
				}
			}
		default:
			err = r.skipImmediates(op)
		}
		if err != nil {
			return err
		}
	}
	if r.remaining() != 0 {
		return r.fail("%d bytes follow the end of the function body", r.remaining())
	}
	return nil
}

// skipImmediates reads the immediates of an instruction without type or
// label immediates, as scanBody does.
func (r *reader) skipImmediates(op byte) error {
	var err error
	switch opcodeImm[op] {
	case immUnknown:
		return unsupported(r.off()-1, "opcode 0x%02x", op)
	case immNone:
	case immIndex:
		_, err = r.u32("index immediate")
	case immIndex2:
		if _, err = r.u32("first index immediate"); err == nil {
			_, err = r.u32("second index immediate")
		}
	case immMemArg:
		err = r.memArg()
	case immI32:
		err = r.s32("i32.const immediate")
	case immI64:
		err = r.s64("i64.const immediate")
	case immF32:
		_, err = r.bytes(4, "f32.const immediate")
	case immF64:
		_, err = r.bytes(8, "f64.const immediate")
	case immSelect:
		err = r.selectTypes()
	case immHeapType:
		err = r.heapType("ref.null heap type")
	case immMisc:
		err = r.misc()
	case immSIMD:
		err = r.simd()
	case immAtomic:
		err = r.atomic()
	default: // control instructions are decoded by the caller
		err = r.fail("unexpected opcode 0x%02x", op)
	}
	return err
}

// valType reads a value type: a one-byte number, vector or reference type,
// or 0x63/0x64 (ref null / ref) followed by a heap type.
func (r *reader) valType(what string) error {
	off := r.off()
	b, err := r.byte(what)
	if err != nil {
		return err
	}
	switch b {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69: // i32 i64 f32 f64 v128 funcref externref exnref
		return nil
	case 0x63, 0x64:
		return r.heapType(what)
	}
	return unsupported(off, "%s 0x%02x", what, b)
}

// heapType reads a heap type: a signed LEB128 of 33 bits that is a type
// index or one of the abstract heap types func, extern and exn.
func (r *reader) heapType(what string) error {
	off := r.off()
	v, err := r.leb(what, 33, true)
	if err != nil {
		return err
	}
	switch t := int64(v); {
	case t >= 0, t == 0x70-0x80, t == 0x6f-0x80, t == 0x69-0x80:
		return nil
	default:
		return unsupported(off, "%s %d", what, t)
	}
}

// blockType reads a block type: a signed LEB128 of 33 bits that is the empty
// type (0x40), a one-byte value type, a type index, or 0x63/0x64 followed by
// a heap type. wazero decodes it the same way.
func (r *reader) blockType() error {
	off := r.off()
	v, err := r.leb("block type", 33, true)
	if err != nil {
		return err
	}
	switch t := int64(v); {
	case t >= 0: // type index
		return nil
	case t == 0x63-0x80, t == 0x64-0x80:
		return r.heapType("block type heap type")
	case t == 0x40-0x80, t == 0x7f-0x80, t == 0x7e-0x80, t == 0x7d-0x80, t == 0x7c-0x80,
		t == 0x7b-0x80, t == 0x70-0x80, t == 0x6f-0x80, t == 0x69-0x80:
		return nil
	default:
		return unsupported(off, "block type %d", t)
	}
}

// tryTable reads the immediates of try_table: a block type and a vector of
// catch clauses.
func (r *reader) tryTable() error {
	if err := r.blockType(); err != nil {
		return err
	}
	n, err := r.count("catch clause count", 2)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		off := r.off()
		kind, err := r.byte("catch clause kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0x00, 0x01: // catch, catch_ref: tag and label
			if _, err = r.u32("catch tag index"); err == nil {
				_, err = r.u32("catch label")
			}
		case 0x02, 0x03: // catch_all, catch_all_ref: label
			_, err = r.u32("catch label")
		default:
			return errorf(off, "unknown catch clause kind %d", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// brTable reads the label vector and default label of br_table.
func (r *reader) brTable() error {
	n, err := r.count("br_table label count", 1)
	if err != nil {
		return err
	}
	for i := uint32(0); i <= n; i++ { // n labels and the default
		if _, err := r.u32("br_table label"); err != nil {
			return err
		}
	}
	return nil
}

// memArg reads a memory argument: alignment flags (bit 6 announces a memory
// index, as in the multi-memory proposal), then an offset (up to 64 bits,
// for memory64).
func (r *reader) memArg() error {
	off := r.off()
	align, err := r.u32("memory argument alignment")
	if err != nil {
		return err
	}
	if align >= 0x80 {
		return errorf(off, "memory argument alignment flags %#x out of range", align)
	}
	if align&0x40 != 0 {
		if _, err := r.u32("memory argument memory index"); err != nil {
			return err
		}
	}
	_, err = r.u64("memory argument offset")
	return err
}

// selectTypes reads the value type vector of the typed select. Only
// one-byte value types are accepted: wazero v1.12's validator reads a
// (ref null $t) or (ref $t) type with its heap type, but its compiler skips
// only the first byte of the type and decodes the heap type as instructions,
// so it can compile a loop that neither the validator nor this decoder sees.
func (r *reader) selectTypes() error {
	n, err := r.count("select type count", 1)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		off := r.off()
		b, err := r.byte("select type")
		if err != nil {
			return err
		}
		switch b {
		case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
		default:
			return unsupported(off, "select type 0x%02x", b)
		}
	}
	return nil
}

// misc reads an instruction with the 0xfc prefix (saturating truncation,
// bulk memory and table instructions).
func (r *reader) misc() error {
	_, _, err := r.miscOp()
	return err
}

// miscOp reads an instruction with the 0xfc prefix and returns its
// sub-opcode and whether every memory index immediate it has (those of
// memory.init, memory.copy and memory.fill) is 0.
func (r *reader) miscOp() (sub uint32, mem0 bool, err error) {
	off := r.off()
	if sub, err = r.u32("0xfc sub-opcode"); err != nil {
		return 0, false, err
	}
	switch sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // trunc_sat
		return sub, true, nil
	case 8, 10, 12, 14: // memory.init data mem, memory.copy mem mem, table.init elem table, table.copy table table
		first, err := r.u32("first index immediate")
		if err != nil {
			return 0, false, err
		}
		second, err := r.u32("second index immediate")
		switch sub {
		case 8:
			mem0 = second == 0
		case 10:
			mem0 = first == 0 && second == 0
		default:
			mem0 = true
		}
		return sub, mem0, err
	case 9, 11, 13, 15, 16, 17: // data.drop, memory.fill, elem.drop, table.grow, table.size, table.fill
		idx, err := r.u32("index immediate")
		return sub, sub != 11 || idx == 0, err
	}
	return 0, false, unsupported(off, "opcode 0xfc %d", sub)
}

// subOpcode reads the LEB128 sub-opcode after the 0xfd or 0xfe prefix.
// wazero reads these as a single byte, which agrees with the LEB128 value
// only for the minimal encoding of a value below 256 (for values from 128,
// the second byte 0x01 is read by wazero as a nop). Anything else is
// reported as unsupported rather than decoded differently from wazero.
func (r *reader) subOpcode(prefix byte) (uint32, error) {
	off, start := r.off(), r.pos
	sub, err := r.u32("sub-opcode")
	if err != nil {
		return 0, err
	}
	if sub > 0xff || r.pos-start != lebLen(sub) {
		return 0, unsupported(off, "encoding % x of opcode 0x%02x %d", r.buf[start:r.pos], prefix, sub)
	}
	return sub, nil
}

// simd reads an instruction with the 0xfd prefix (128-bit SIMD).
func (r *reader) simd() error {
	off := r.off()
	sub, err := r.subOpcode(0xfd)
	if err != nil {
		return err
	}
	for _, h := range simdHoles {
		if sub == h {
			return unsupported(off, "opcode 0xfd %d", sub)
		}
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads, v128.store, load32_zero, load64_zero
		return r.memArg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		_, err = r.bytes(16, "v128 immediate")
		return err
	case 21 <= sub && sub <= 34: // extract_lane, replace_lane
		_, err = r.bytes(1, "lane index")
		return err
	case 84 <= sub && sub <= 91: // load*_lane, store*_lane
		if err := r.memArg(); err != nil {
			return err
		}
		_, err = r.bytes(1, "lane index")
		return err
	}
	return nil
}

// atomic reads an instruction with the 0xfe prefix (threads).
func (r *reader) atomic() error {
	off := r.off()
	sub, err := r.subOpcode(0xfe)
	if err != nil {
		return err
	}
	switch {
	case sub <= 2, 0x10 <= sub && sub <= 0x4e: // notify, wait32, wait64, loads, stores, rmw
		return r.memArg()
	case sub == 3: // atomic.fence: a reserved byte
		_, err = r.bytes(1, "atomic.fence reserved byte")
		return err
	}
	return unsupported(off, "opcode 0xfe %d", sub)
}

// lebLen returns the length of the minimal unsigned LEB128 encoding of v.
func lebLen(v uint32) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// nextBody reads the size of function body i of the code section at r and
// returns a reader over the body, leaving r after it.
func (r *reader) nextBody(i uint32) (*reader, error) {
	off := r.off()
	size, err := r.u32("function body size")
	if err != nil {
		return nil, err
	}
	if int64(size) > int64(r.remaining()) {
		return nil, errorf(off, "function body %d size %d exceeds the %d remaining bytes", i, size, r.remaining())
	}
	body := &reader{buf: r.buf[r.pos : r.pos+int(size)], base: r.off()}
	r.pos += int(size)
	return body, nil
}
