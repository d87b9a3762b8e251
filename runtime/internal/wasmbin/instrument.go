package wasmbin

import (
	"fmt"
	"math"
)

// StopGlobalName is the export name of the i32 global the host sets to
// non-zero to stop the guest. InstrumentLoops adds the global and its export.
const StopGlobalName = "__gojinn_stop"

// InstrumentLoops returns a copy of the module with a new mutable i32 global
// (initial value 0), exported as StopGlobalName, and, at the start of the
// body of every loop instruction in every function, the sequence
//
//	global.get $stop
//	if        ;; empty block type
//	  unreachable
//	end
//
// so that a loop traps (unreachable) at its next iteration once the host sets
// the global to a non-zero value, for example from another goroutine through
// api.MutableGlobal.Set. This replaces wazero's WithCloseOnContextDone, which
// compiles every loop header into a call out of machine code.
//
// The new global gets the last index of the global index space (appended to
// the global section, or a new global section), so no existing global index
// changes, and its export is appended to the export section (created if
// needed, as in ExportMutableGlobals). Only the global, export and code
// sections change; every other section is copied byte for byte. Function
// bodies grow, so code offsets (DWARF, wazero's source offsets) shift.
//
// InstrumentLoops decodes every instruction of every function body. A body
// using an instruction it does not know, or an encoding of one that wazero
// would decode differently (see DESIGN.md), yields an error wrapping
// ErrUnsupportedInstruction: the caller should then compile the original
// module with the runtime's own termination checks. Malformed input yields
// ErrMalformed with a byte offset, an existing export named StopGlobalName
// ErrNameConflict (so instrumenting an instrumented module fails: the
// function is deterministic but not idempotent), and sizes beyond the
// format's 32-bit limits ErrTooLarge. It never panics and never modifies the
// input. Everything it does not decode (types, function and global indices,
// the typing of instructions) is left for the runtime to validate.
func InstrumentLoops(wasm []byte) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	if _, taken := m.exportNames[StopGlobalName]; taken {
		return nil, fmt.Errorf("%w: %q is already exported", ErrNameConflict, StopGlobalName)
	}
	if m.totalGlobals == math.MaxUint32 {
		return nil, fmt.Errorf("%w: no global index left for %s", ErrTooLarge, StopGlobalName)
	}
	stop := m.totalGlobals

	// Splices replace wasm[start:end] with data; they are in input order.
	type splice struct {
		start, end int
		data       []byte
	}
	var splices []splice

	// The global section: append i32, mutable, (i32.const 0) end.
	entry := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	var payload []byte
	if m.hasGlobal {
		old := wasm[m.globalEntries:m.globalEnd]
		payload = appendU32(make([]byte, 0, 5+len(old)+len(entry)), m.definedGlobals+1)
		payload = append(payload, old...)
	} else {
		payload = appendU32(make([]byte, 0, 1+len(entry)), 1)
	}
	payload = append(payload, entry...)
	globalSec, err := appendSection(nil, secGlobal, payload, "global")
	if err != nil {
		return nil, err
	}
	if m.hasGlobal {
		splices = append(splices, splice{m.globalStart, m.globalEnd, globalSec})
	} else {
		splices = append(splices, splice{m.globalInsertAt, m.globalInsertAt, globalSec})
	}

	// The export section. It follows the global section, and a new one is
	// inserted no earlier than a new global section.
	var exp []byte
	exp = appendU32(exp, uint32(len(StopGlobalName)))
	exp = append(exp, StopGlobalName...)
	exp = append(exp, externGlobal)
	exp = appendU32(exp, stop)
	exportSec, head, tail, err := m.exportSection(wasm, exp, 1)
	if err != nil {
		return nil, err
	}
	splices = append(splices, splice{head, tail, exportSec})

	if m.hasCode {
		payload, err := instrumentCode(wasm[m.codeBody:m.codeEnd], m.codeBody, stop)
		if err != nil {
			return nil, err
		}
		codeSec, err := appendSection(nil, secCode, payload, "code")
		if err != nil {
			return nil, err
		}
		splices = append(splices, splice{m.codeStart, m.codeEnd, codeSec})
	}

	size := len(wasm)
	for _, s := range splices {
		size += len(s.data) - (s.end - s.start)
	}
	out := make([]byte, 0, size)
	pos := 0
	for _, s := range splices {
		out = append(out, wasm[pos:s.start]...)
		out = append(out, s.data...)
		pos = s.end
	}
	return append(out, wasm[pos:]...), nil
}

// HasStartSection reports whether wasm is a module that parses (as far as
// ExportMutableGlobals decodes it) and has a start section. A start function
// runs during instantiation, before the host holds the instance and can set
// the stop global, so loop instrumentation cannot interrupt it.
func HasStartSection(wasm []byte) bool {
	m, err := parse(wasm)
	return err == nil && m.hasStart
}

// stopCheck returns the instruction sequence inserted at the start of every
// loop body: global.get stop; if (empty); unreachable; end.
func stopCheck(stop uint32) []byte {
	b := appendU32([]byte{0x23}, stop)
	return append(b, 0x04, 0x40, 0x00, 0x0b)
}

// instrumentCode returns the payload of the code section whose payload is
// code (starting at absolute offset base) with the stop check inserted at
// the start of every loop body.
func instrumentCode(code []byte, base int, stop uint32) ([]byte, error) {
	check := stopCheck(stop)
	r := &reader{buf: code, base: base}
	n, err := r.count("function body count", 1)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(code)+len(code)/16)
	out = appendU32(out, n)
	var loops []int
	for i := uint32(0); i < n; i++ {
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
		if loops, err = scanBody(body, loops[:0], stop); err != nil {
			return nil, err
		}
		grown := uint64(size) + uint64(len(loops))*uint64(len(check))
		if grown > math.MaxUint32 {
			return nil, fmt.Errorf("%w: function body %d would grow to %d bytes", ErrTooLarge, i, grown)
		}
		out = appendU32(out, uint32(grown))
		prev := 0
		for _, at := range loops {
			out = append(out, body.buf[prev:at]...)
			out = append(out, check...)
			prev = at
		}
		out = append(out, body.buf[prev:]...)
	}
	if r.remaining() != 0 {
		return nil, r.fail("code section has %d trailing bytes", r.remaining())
	}
	return out, nil
}
