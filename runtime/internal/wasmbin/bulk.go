package wasmbin

import (
	"fmt"
	"math"
)

// This file charges the instructions that can do unbounded work in one go
// against $tick in proportion to their length: the bulk memory
// instructions (memory.init, memory.copy, memory.fill) and the table
// instructions (table.init, table.copy, table.fill). wazero compiles each
// of them into one memmove, or a few, straight from machine code, so one
// of them can move a whole memory or table without leaving it. See
// InstrumentLoops and DESIGN.md.

// bulkShift sets the price of the bulk memory instructions: memory.init,
// memory.copy and memory.fill of n bytes subtract n >> bulkShift from
// $tick, which yields to Go every YieldInterval loop iterations and calls:
// one tick per KiB, about what an ordinary loop iteration costs. See
// DESIGN.md for the choice.
const bulkShift = 10

// tableShift sets the price of table.init, table.copy and table.fill of n
// entries: n >> tableShift ticks. wazero moves a table entry as 8 bytes (a
// pointer) with the memmove the memory instructions use, so an entry costs
// what 8 bytes cost there: one tick per 128 entries.
const tableShift = bulkShift - 3

// bulkOp is an instruction charged by its length operand.
type bulkOp struct {
	at  int    // its 0xfc prefix, in the body
	sub uint32 // its 0xfc sub-opcode: 8, 10, 11 (memory), 12, 14, 17 (table)
}

// table reports a table instruction (its length counts entries).
func (op bulkOp) table() bool { return op.sub == 12 || op.sub == 14 || op.sub == 17 }

// wide reports whether the length is an i64: memory.copy and memory.fill
// of a 64-bit memory. memory.init's length is an i32 in any memory (a data
// segment's offsets are), and so is a table instruction's (a module with
// a 64-bit table is not instrumented, see hasTable64).
func (op bulkOp) wide(mem64 bool) bool { return mem64 && (op.sub == 10 || op.sub == 11) }

// bulkCharges is how the bulk instructions of one body are charged: the
// scratch locals that hold their lengths, declared after the body's own
// locals (an i64 for the wide lengths, then an i32 for the others, each
// only when needed), and the sequence inserted before each kind of
// instruction, a charge (bulkCharge) followed by the conditional yield.
type bulkCharges struct {
	decls  []byte // the scratch locals' declarations (count 1, type)
	narrow []byte // before a memory instruction with an i32 length
	wide   []byte // before a memory instruction with an i64 length
	table  []byte // before a table instruction
}

// plan prepares c for the bulk instructions ops of function body i, which
// has locals parameters and locals; it returns how many scratch locals the
// body gets, or ErrTooLarge when their indices would not fit in 32 bits.
func (c *bulkCharges) plan(i uint32, ops []bulkOp, locals uint64, rw *codeRewrite) (uint32, error) {
	c.decls, c.narrow, c.wide, c.table = c.decls[:0], c.narrow[:0], c.wide[:0], c.table[:0]
	var hasNarrow, hasWide, hasTable bool
	for _, op := range ops {
		switch {
		case op.table():
			hasTable = true
		case op.wide(rw.mem64):
			hasWide = true
		default:
			hasNarrow = true
		}
	}
	next := locals
	var local64, local32 uint64
	if hasWide {
		local64, next = next, next+1
		c.decls = append(c.decls, 0x01, 0x7e)
	}
	if hasNarrow || hasTable {
		local32, next = next, next+1
		c.decls = append(c.decls, 0x01, 0x7f)
	}
	if next > math.MaxUint32 {
		return 0, fmt.Errorf("%w: function body %d has %d parameters and locals, no index is left for a scratch local", ErrTooLarge, i, locals)
	}
	if hasWide {
		c.wide = append(bulkCharge(c.wide, rw.tick, uint32(local64), true, bulkShift), rw.yield...)
	}
	if hasNarrow {
		c.narrow = append(bulkCharge(c.narrow, rw.tick, uint32(local32), false, bulkShift), rw.yield...)
	}
	if hasTable {
		c.table = append(bulkCharge(c.table, rw.tick, uint32(local32), false, tableShift), rw.yield...)
	}
	return uint32(len(c.decls) / 2), nil
}

// of returns what plan prepared for op.
func (c *bulkCharges) of(op bulkOp, mem64 bool) []byte {
	switch {
	case op.table():
		return c.table
	case op.wide(mem64):
		return c.wide
	}
	return c.narrow
}

// bulkCharge appends the charge of an instruction whose length n is held
// by the scratch local local (an i64 when wide, else an i32): $tick -= n
// >> shift. It leaves n on the stack for the instruction. A wide length
// is charged as 4 GiB from 4 GiB on (2^22 ticks, what the largest i32
// length costs), so that one charge cannot wrap $tick around.
func bulkCharge(b []byte, tick, local uint32, wide bool, shift byte) []byte {
	b = appendU32(append(b, 0x22), local) // local.tee $n
	b = appendU32(append(b, 0x23), tick)  // global.get $tick
	b = appendU32(append(b, 0x20), local) // local.get $n
	if !wide {
		b = append(b, 0x41, shift, 0x76) // i32.const shift i32.shr_u
	} else {
		b = append(b, 0x42, shift, 0x88, 0xa7) // i64.const shift i64.shr_u i32.wrap_i64
		b = append(b, 0x41)                    // i32.const
		b = appendS32(b, 1<<(32-shift))        // the charge for 4 GiB
		b = appendU32(append(b, 0x20), local)  // local.get $n
		b = append(b, 0x42, 0x20, 0x88, 0x50)  // i64.const 32 i64.shr_u i64.eqz
		b = append(b, 0x1b)                    // select: n < 4 GiB ? n >> shift : 4 GiB >> shift
	}
	b = append(b, 0x6b, 0x24) // i32.sub global.set
	return appendU32(b, tick) // $tick
}

// hasTable64 reports whether a table the module imports or defines has
// 64-bit limits (table64, part of memory64): the length of a table
// instruction on it is an i64, which the table charge does not handle
// (wazero v1.12 has neither). The table section is decoded only for this,
// for modules with table instructions. A table with an initializer
// expression (0x40 0x00) or a typed reference type is reported as
// ErrUnsupportedInstruction, as CapTables does.
func (m *module) hasTable64(wasm []byte) (bool, error) {
	if m.importedTable64 {
		return true, nil
	}
	if !m.hasTable {
		return false, nil
	}
	r := &reader{buf: wasm[m.tableBody:m.tableEnd], base: m.tableBody}
	n, err := r.count("table count", 2)
	if err != nil {
		return false, err
	}
	for i := uint32(0); i < n; i++ {
		off := r.off()
		t, err := r.byte("table element type")
		if err != nil {
			return false, err
		}
		if t != 0x70 && t != 0x6f {
			return false, unsupported(off, "table %d has element type %#x", i, t)
		}
		if r.remaining() > 0 && r.buf[r.pos]&4 != 0 {
			return true, nil
		}
		if err := r.limits("table limits", 0x05); err != nil {
			return false, err
		}
	}
	if r.remaining() != 0 {
		return false, r.fail("table section has %d trailing bytes", r.remaining())
	}
	return false, nil
}

// funcParams decodes the type and function sections and returns the
// parameter count of every function the module defines, in the order of
// the code section. The type section is decoded as wazero decodes it:
// function types (0x60), also inside rec groups (0x4e).
func (m *module) funcParams(wasm []byte) ([]uint32, error) {
	var types []uint32 // parameter count of every type
	if m.hasType {
		r := &reader{buf: wasm[m.typeBody:m.typeEnd], base: m.typeBody}
		n, err := r.count("type count", 2)
		if err != nil {
			return nil, err
		}
		types = make([]uint32, 0, n)
		for i := uint32(0); i < n; i++ {
			group := uint32(1)
			if r.remaining() > 0 && r.buf[r.pos] == 0x4e {
				r.pos++
				if group, err = r.count("rec group type count", 3); err != nil {
					return nil, err
				}
			}
			for j := uint32(0); j < group; j++ {
				params, err := r.funcType()
				if err != nil {
					return nil, err
				}
				types = append(types, params)
			}
		}
		if r.remaining() != 0 {
			return nil, r.fail("type section has %d trailing bytes", r.remaining())
		}
	}
	if !m.hasFunc {
		return nil, nil
	}
	r := &reader{buf: wasm[m.funcBody:m.funcEnd], base: m.funcBody}
	n, err := r.count("function count", 1)
	if err != nil {
		return nil, err
	}
	params := make([]uint32, n)
	for i := range params {
		off := r.off()
		t, err := r.u32("function type index")
		if err != nil {
			return nil, err
		}
		if uint64(t) >= uint64(len(types)) {
			return nil, errorf(off, "function type index %d out of range (%d types)", t, len(types))
		}
		params[i] = types[t]
	}
	if r.remaining() != 0 {
		return nil, r.fail("function section has %d trailing bytes", r.remaining())
	}
	return params, nil
}

// funcType reads a function type and returns its parameter count.
func (r *reader) funcType() (uint32, error) {
	off := r.off()
	form, err := r.byte("function type")
	if err != nil {
		return 0, err
	}
	if form != 0x60 {
		return 0, errorf(off, "function type starts with 0x%02x, not 0x60", form)
	}
	var params uint32
	for k, what := range [2]string{"parameter", "result"} {
		n, err := r.count(what+" count", 1)
		if err != nil {
			return 0, err
		}
		for i := uint32(0); i < n; i++ {
			if err := r.valType(what + " type"); err != nil {
				return 0, err
			}
		}
		if k == 0 {
			params = n
		}
	}
	return params, nil
}
