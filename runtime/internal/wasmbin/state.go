package wasmbin

import (
	"errors"
	"fmt"
	"slices"
)

// This file finds the instructions that change what a reset of a pooled
// instance does not restore. The host resets linear memory and mutable
// globals; wazero v1.12 has no way to reset a table or to undo a
// segment's drop, so a request that changes either leaves the change to
// the next request served by the same instance. See DESIGN.md, "State a
// reset does not restore".

// initExport is the reactor's initialisation export, which the host
// calls once per instance, before the snapshot.
const initExport = "_initialize"

// StateWrite is an instruction that changes an instance's state outside
// linear memory and globals: table.set, table.grow, table.fill,
// table.copy and table.init change a table, elem.drop drops an element
// segment and data.drop a data segment.
type StateWrite struct {
	// Func is the index of the function whose body holds the
	// instruction, in the function index space (imported functions
	// first), as wasm-objdump and wasm2wat number them.
	Func uint32
	// Export is the function's first export name; "" when it has none.
	Export string
	// Instr names the instruction ("table.set").
	Instr string
	// Offset is the instruction's byte offset in the module.
	Offset int
	// Undecoded reports that the body could not be decoded exactly
	// (ErrUnsupportedInstruction), so Offset is a byte that would start
	// the instruction if an instruction started there: possibly inside
	// an immediate.
	Undecoded bool
}

// Effect says what the instruction changes: "changes a table", "drops an
// element segment" or "drops a data segment".
func (w *StateWrite) Effect() string {
	switch w.Instr {
	case "elem.drop":
		return "drops an element segment"
	case "data.drop":
		return "drops a data segment"
	}
	return "changes a table"
}

// FindStateWrite returns the first instruction, in the order of the code
// section, that changes a table or a segment (StateWrite) in a function
// that may run after an instance's initialisation, or nil when there is
// none.
//
// The functions that run only during initialisation are the start
// function and the function exported as "_initialize", each provided
// that nothing else can run it: no other export names it, and no call,
// return_call or ref.func in any body, no element segment and no
// constant expression of the table, global and element sections does
// (without a reference, no table or call_ref can reach it either). Their
// writes happen before the snapshot and are the same for every request.
// Any other function's, whether or not something calls it, counts.
//
// Bodies are decoded as InstrumentLoops decodes them. A body it cannot
// decode (ErrUnsupportedInstruction: an instruction it does not know, or
// an encoding wazero could read differently) is scanned byte by byte
// instead: every offset where a state write would start if an
// instruction started there counts (StateWrite.Undecoded), whatever the
// way wazero splits the body into instructions; and since the calls in
// such a body are unknown, the initialisation functions are then not
// exempt either. Other malformed input is an error wrapping ErrMalformed
// (or ErrLimit, from the element and table sections). FindStateWrite
// never panics and never modifies wasm.
func FindStateWrite(wasm []byte) (*StateWrite, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	if !m.hasCode {
		return nil, nil
	}
	init, err := m.initFuncs(wasm)
	if err != nil {
		return nil, err
	}
	s := bodyScan{watch: init}
	var held []StateWrite // writes in init's bodies
	var refs uint8        // bit k: init[k] is referenced
	r := &reader{buf: wasm[m.codeBody:m.codeEnd], base: m.codeBody}
	n, err := r.count("function body count", 1)
	if err != nil {
		return nil, err
	}
	for i := uint32(0); i < n; i++ {
		body, err := r.nextBody(i)
		if err != nil {
			return nil, err
		}
		fn := m.importedFuncs + i
		w := StateWrite{Func: fn}
		if err := scanBody(body, &s, m.totalGlobals); err == nil {
			refs |= s.refers
			if s.writeAt < 0 {
				continue
			}
			w.Instr, w.Offset = s.writeOp, body.base+s.writeAt
		} else if errors.Is(err, ErrUnsupportedInstruction) {
			refs = 0xff // its calls are unknown
			at, op := coarseWrite(body.buf)
			if at < 0 {
				continue
			}
			w.Instr, w.Offset, w.Undecoded = op, body.base+at, true
		} else {
			return nil, fmt.Errorf("function %d: %w", fn, err)
		}
		if !slices.Contains(init, fn) {
			return m.withExport(wasm, &w), nil
		}
		held = append(held, w)
	}
	if r.remaining() != 0 {
		return nil, r.fail("code section has %d trailing bytes", r.remaining())
	}
	if len(held) == 0 {
		return nil, nil
	}
	// Only now, for a write during initialisation: the other references.
	c := &limitChecker{funcRef: func(idx uint32) {
		for k, f := range init {
			if f == idx {
				refs |= 1 << k
			}
		}
	}}
	for _, sec := range []struct {
		has       bool
		body, end int
		decode    func(*reader) error
	}{
		{m.hasTable, m.tableBody, m.tableEnd, c.tableSection},
		{m.hasGlobal, m.globalBody, m.globalEnd, c.globalSection},
		{m.hasElement, m.elemBody, m.elemEnd, c.elementSection},
	} {
		if !sec.has {
			continue
		}
		sr := &reader{buf: wasm[sec.body:sec.end], base: sec.body}
		if err := sec.decode(sr); err != nil {
			return nil, err
		}
		if sr.remaining() != 0 {
			return nil, sr.fail("section has %d trailing bytes", sr.remaining())
		}
	}
	for _, w := range held {
		if refs&(1<<slices.Index(init, w.Func)) != 0 {
			return m.withExport(wasm, &w), nil
		}
	}
	return nil, nil
}

// initFuncs returns the functions that run during initialisation only,
// as far as the start and export sections tell: the start function and
// the function exported as "_initialize", unless another export names
// it (FindStateWrite also looks for other references).
func (m *module) initFuncs(wasm []byte) ([]uint32, error) {
	var init []uint32
	if m.hasStart {
		r := &reader{buf: wasm[m.startBody:m.startEnd], base: m.startBody}
		f, err := r.u32("start function index")
		if err != nil {
			return nil, err
		}
		if r.remaining() != 0 {
			return nil, r.fail("start section has %d trailing bytes", r.remaining())
		}
		init = append(init, f)
	}
	var others []uint32 // functions exported under another name
	err := m.eachFuncExport(wasm, func(name string, f uint32) bool {
		if name == initExport {
			if !slices.Contains(init, f) {
				init = append(init, f)
			}
		} else {
			others = append(others, f)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(init, func(f uint32) bool { return slices.Contains(others, f) }), nil
}

// withExport sets w.Export to the first export name of w.Func and
// returns w.
func (m *module) withExport(wasm []byte, w *StateWrite) *StateWrite {
	_ = m.eachFuncExport(wasm, func(name string, f uint32) bool {
		if f == w.Func {
			w.Export = name
			return false
		}
		return true
	})
	return w
}

// eachFuncExport calls yield with the name and index of every function
// export, in order, until it returns false.
func (m *module) eachFuncExport(wasm []byte, yield func(name string, f uint32) bool) error {
	if !m.hasExport {
		return nil
	}
	r := &reader{buf: wasm[m.exportEntries:m.exportEnd], base: m.exportEntries}
	for i := uint32(0); i < m.exportCount; i++ {
		name, err := r.name("export name")
		if err != nil {
			return err
		}
		kind, err := r.byte("export kind")
		if err != nil {
			return err
		}
		idx, err := r.u32("export index")
		if err != nil {
			return err
		}
		if kind == 0 && !yield(name, idx) {
			return nil
		}
	}
	return nil
}

// coarseWrite returns the first offset of body (a function body that
// does not decode) at which a state write would start if an instruction
// started there, and the write's name; -1 when there is none. The 0xfc
// sub-opcode is read as wazero reads it (an unsigned LEB128).
func coarseWrite(body []byte) (int, string) {
	for p, b := range body {
		switch b {
		case 0x26:
			return p, "table.set"
		case 0xfc:
			if sub, _, ok := wazeroU32(body[p+1:]); ok && int(sub) < len(miscWrites) && miscWrites[sub] != "" {
				return p, miscWrites[sub]
			}
		}
	}
	return -1, ""
}
