package wasmbin

// This file charges the bulk memory instructions (memory.init,
// memory.copy, memory.fill) against $tick in proportion to their length:
// one of them can touch the whole linear memory without leaving wazero's
// machine code. See InstrumentLoops and DESIGN.md.

// bulkShift sets the price of the bulk memory instructions: memory.init,
// memory.copy and memory.fill of n bytes subtract n >> bulkShift from
// $tick, which yields to Go every YieldInterval loop iterations and calls:
// one tick per KiB, about what an ordinary loop iteration costs. See
// DESIGN.md for the choice.
const bulkShift = 10

// bulkCharge returns the sequence inserted before every bulk memory
// instruction of a body whose scratch local (i32, or i64 for a 64-bit
// memory) has index local; see InstrumentLoops. It leaves the length
// operand on the stack. The i64 length of a 64-bit memory is charged as
// 4 GiB from 4 GiB on (2^22 ticks, what the largest i32 length costs),
// so that one charge cannot wrap $tick around.
func bulkCharge(b []byte, tick, local uint32, mem64 bool) []byte {
	b = appendU32(append(b, 0x22), local) // local.tee $n
	b = appendU32(append(b, 0x23), tick)  // global.get $tick
	b = appendU32(append(b, 0x20), local) // local.get $n
	if !mem64 {
		b = append(b, 0x41, bulkShift, 0x76) // i32.const bulkShift i32.shr_u
	} else {
		b = append(b, 0x42, bulkShift, 0x88, 0xa7) // i64.const bulkShift i64.shr_u i32.wrap_i64
		b = append(b, 0x41)                        // i32.const
		b = appendS32(b, 1<<(32-bulkShift))        // the charge for 4 GiB
		b = appendU32(append(b, 0x20), local)      // local.get $n
		b = append(b, 0x42, 0x20, 0x88, 0x50)      // i64.const 32 i64.shr_u i64.eqz
		b = append(b, 0x1b)                        // select: n < 4 GiB ? n >> bulkShift : 4 GiB >> bulkShift
	}
	b = append(b, 0x6b, 0x24) // i32.sub global.set
	return appendU32(b, tick) // $tick
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
