package wasmbin

import (
	"fmt"
	"math"
)

// StopGlobalName is the export name of the i32 global the host sets to
// non-zero to stop the guest. InstrumentLoops adds the global and its export.
const StopGlobalName = "__gojinn_stop"

// YieldInterval is the number of loop iterations (counted over all loops of
// an instance) between two exits of the instrumented guest into the Go
// runtime. See InstrumentLoops.
const YieldInterval = 1024

// InstrumentLoops returns a copy of the module with a new mutable i32 global
// (initial value 0), exported as StopGlobalName, and, at the start of the
// body of every loop instruction in every function, the sequence
//
//	global.get $stop
//	if                      ;; empty block type
//	  unreachable
//	end
//	global.get $tick        ;; $tick -= 1
//	i32.const 1
//	i32.sub
//	global.set $tick
//	global.get $tick        ;; once every YieldInterval iterations:
//	i32.const 1
//	i32.lt_s
//	if
//	  i32.const YieldInterval
//	  global.set $tick
//	  i32.const 0           ;; i64.const 0 for a 64-bit memory
//	  memory.grow 0         ;; an exit to Go: the runtime may preempt here
//	  drop
//	end
//
// so that a loop traps (unreachable) at its next iteration once the host sets
// the global to a non-zero value, for example from another goroutine through
// api.MutableGlobal.Set. This replaces wazero's WithCloseOnContextDone, which
// compiles every loop header into a call out of machine code.
//
// Loops are not the only way to run long: a function that calls itself
// twice down to a fixed depth makes 2^depth calls with no loop and a
// shallow stack, and a chain of functions each calling the next twice does
// the same without recursion. So every function body that makes a call
// (call, call_indirect, call_ref or a tail call) also starts with
//
//	global.get $tick        ;; $tick -= 1
//	i32.const 1
//	i32.sub
//	global.set $tick
//	global.get $tick
//	i32.const 1
//	i32.lt_s
//	if                      ;; once every YieldInterval calls and iterations:
//	  global.get $stop
//	  if
//	    unreachable
//	  end
//	  i32.const YieldInterval
//	  global.set $tick
//	  i32.const 0           ;; i64.const 0 for a 64-bit memory
//	  memory.grow 0
//	  drop
//	end
//
// which counts the call with the loop iterations and reads $stop only when
// $tick runs out: a stop is noticed within YieldInterval calls. A body
// without calls or loops runs its instructions once and returns.
//
// One instruction can still run long: memory.fill, memory.copy and
// memory.init touch as many bytes as their length operand says, up to the
// whole memory, and table.fill, table.copy and table.init as many table
// entries (8 bytes each in wazero). So each of them is charged by its
// length n, one tick per KiB (per 128 entries: n >> 7 for the table
// instructions), just before it runs:
//
//	local.tee $n            ;; n stays on the stack for the instruction
//	global.get $tick        ;; $tick -= n >> 10
//	local.get $n
//	i32.const 10
//	i32.shr_u
//	i32.sub
//	global.set $tick
//
// followed by the conditional yield of the entry sequence above (from
// global.get $tick; i32.const 1; i32.lt_s on), so a charge that uses $tick
// up yields before the instruction runs, and straight-line code of many
// large fills cannot hold the Go runtime or escape $stop. $n is a
// scratch local (i32) declared after the body's own locals, in every body
// that has such an instruction; its index is the function's parameter
// count plus its locals, so the type and function sections are decoded
// for those bodies. With a 64-bit memory, memory.fill and memory.copy
// have an i64 length: their $n is an i64 scratch local (declared before
// the i32 one, which memory.init and the table instructions, whose
// lengths stay i32s, then use) and the charge is i32.wrap_i64(n >> 10),
// or 2^22 (the charge for 4 GiB) from 4 GiB on, chosen with select. A bulk
// memory instruction whose memory index immediate is not 0 (multi-memory:
// its length would have that memory's type), and a table instruction in a
// module with a 64-bit table (table64; the table section is then decoded)
// are ErrUnsupportedInstruction.
//
// The $tick part is needed because Go cannot preempt a goroutine running
// wazero's machine code: a guest looping without ever leaving it would block
// every stop-the-world of the garbage collector, and with it the goroutine
// that is to set the stop global, and hang the whole process. memory.grow
// is compiled into an exit to Go; with a delta of 0 it changes nothing.
// $tick is a second new mutable i32 global, not exported by this function
// (ExportMutableGlobals exports it like any other mutable global, so
// snapshots cover it). A module without memory gets one (zero pages, maximum
// zero, not exported) for the memory.grow.
//
// The stop global gets the index just past the module's globals and $tick
// the next one (appended to the global section, or a new global section), so
// no existing global index changes, and the stop global's export is
// appended to the export section (created if needed, as in
// ExportMutableGlobals). Only the memory (when one is added), global, export
// and code sections change; every other section is copied byte for byte.
// Function bodies grow, so code offsets (DWARF, wazero's source offsets)
// shift; a body that gets the scratch local has its local declaration
// count re-encoded, and existing local indices do not change.
//
// InstrumentLoops decodes every instruction of every function body. A body
// using an instruction it does not know, or an encoding of one that wazero
// would decode differently (see DESIGN.md), yields an error wrapping
// ErrUnsupportedInstruction: the caller should then compile the original
// module with the runtime's own termination checks. Malformed input yields
// ErrMalformed with a byte offset (this includes global.get and global.set
// of a global that does not exist: after the rewrite such an index could
// name the new globals; for a body with a bulk instruction, a type or
// function section that does not decode or has no type for the body; for a
// body with a table instruction, a table section or table import that does
// not decode), an existing export named StopGlobalName ErrNameConflict (so
// instrumenting an instrumented module fails: the function is
// deterministic but not idempotent), and sizes beyond the format's 32-bit
// limits ErrTooLarge (also a function with 2^32-1 parameters and locals,
// which leaves no index for the scratch local). It never panics and never
// modifies the input. Everything it does not decode (the types of modules
// without bulk instructions, function indices, the typing of
// instructions) is left for the runtime to validate.
func InstrumentLoops(wasm []byte) ([]byte, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, err
	}
	if _, taken := m.exportNames[StopGlobalName]; taken {
		return nil, fmt.Errorf("%w: %q is already exported", ErrNameConflict, StopGlobalName)
	}
	if m.totalGlobals >= math.MaxUint32-1 {
		return nil, fmt.Errorf("%w: no global index left for %s", ErrTooLarge, StopGlobalName)
	}
	stop, tick := m.totalGlobals, m.totalGlobals+1

	// Splices replace wasm[start:end] with data; they are in input order.
	type splice struct {
		start, end int
		data       []byte
	}
	var splices []splice

	// The memory for memory.grow: memory 0, imported or defined, or a new
	// one with limits 0..0.
	mem64 := m.mem64
	if m.importedMemories == 0 {
		var count uint32
		if m.hasMemory {
			if count, mem64, err = firstMemory(wasm[m.memoryBody:m.memoryEnd], m.memoryBody); err != nil {
				return nil, err
			}
		}
		if count == 0 {
			memSec := []byte{secMemory, 0x04, 0x01, 0x01, 0x00, 0x00} // one memory, max 0, min 0
			if m.hasMemory {
				splices = append(splices, splice{m.memoryStart, m.memoryEnd, memSec})
			} else {
				splices = append(splices, splice{m.memoryInsertAt, m.memoryInsertAt, memSec})
			}
		}
	}

	// The global section: append the stop global, then $tick.
	entries := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41}
	entries = appendS32(entries, YieldInterval)
	entries = append(entries, 0x0b)
	var payload []byte
	if m.hasGlobal {
		old := wasm[m.globalEntries:m.globalEnd]
		payload = appendU32(make([]byte, 0, 5+len(old)+len(entries)), m.definedGlobals+2)
		payload = append(payload, old...)
	} else {
		payload = appendU32(make([]byte, 0, 1+len(entries)), 2)
	}
	payload = append(payload, entries...)
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
		rw := &codeRewrite{
			check: stopCheck(stop, tick, mem64), entry: entryCheck(stop, tick, mem64),
			yield: yieldIfDue(stop, tick, mem64),
			tick:  tick, mem64: mem64, globals: stop,
			params:  func() ([]uint32, error) { return m.funcParams(wasm) },
			table64: func() (bool, error) { return m.hasTable64(wasm) },
		}
		payload, err := instrumentCode(wasm[m.codeBody:m.codeEnd], m.codeBody, rw)
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

// firstMemory decodes the memory section payload mem (at absolute offset
// base) and returns the number of memories and whether the first one has
// 64-bit limits.
func firstMemory(mem []byte, base int) (count uint32, mem64 bool, err error) {
	r := &reader{buf: mem, base: base}
	if count, err = r.count("memory count", 2); err != nil {
		return 0, false, err
	}
	for i := uint32(0); i < count; i++ {
		if i == 0 && r.remaining() > 0 {
			mem64 = r.buf[r.pos]&4 != 0
		}
		if err := r.limits("memory limits", 0x07); err != nil {
			return 0, false, err
		}
	}
	if r.remaining() != 0 {
		return 0, false, r.fail("memory section has %d trailing bytes", r.remaining())
	}
	return count, mem64, nil
}

// HasStartSection reports whether wasm is a module that parses (as far as
// ExportMutableGlobals decodes it) and has a start section. A start function
// runs during instantiation, before the host holds the instance and can set
// the stop global, so loop instrumentation cannot interrupt it.
func HasStartSection(wasm []byte) bool {
	m, err := parse(wasm)
	return err == nil && m.hasStart
}

// goBuildIDSection names the custom section the Go linker writes into
// every module it links (cmd/link, GOARCH=wasm).
const goBuildIDSection = "go:buildid"

// IsGoModule reports whether wasm is a module that parses (as far as
// ExportMutableGlobals decodes it) and was linked by the Go toolchain: it
// carries the go:buildid custom section. The host uses it to hand Go
// guests settings only the Go runtime reads (GOMEMLIMIT). A module can
// claim to be Go by adding the section; it then gets those settings,
// which no other runtime reads.
func IsGoModule(wasm []byte) bool {
	m, err := parse(wasm)
	return err == nil && m.goBuildID
}

// stopCheck returns the instruction sequence inserted at the start of every
// loop body; see InstrumentLoops.
func stopCheck(stop, tick uint32, mem64 bool) []byte {
	b := appendU32([]byte{0x23}, stop)    // global.get $stop
	b = append(b, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	b = appendU32(append(b, 0x23), tick)  // global.get $tick
	b = append(b, 0x41, 0x01, 0x6b, 0x24) // i32.const 1 i32.sub global.set
	b = appendU32(b, tick)                // $tick
	b = appendU32(append(b, 0x23), tick)  // global.get $tick
	b = append(b, 0x41, 0x01, 0x48)       // i32.const 1 i32.lt_s
	b = append(b, 0x04, 0x40, 0x41)       // if i32.const
	b = appendS32(b, YieldInterval)       // YieldInterval
	b = appendU32(append(b, 0x24), tick)  // global.set $tick
	if mem64 {
		b = append(b, 0x42, 0x00) // i64.const 0
	} else {
		b = append(b, 0x41, 0x00) // i32.const 0
	}
	return append(b, 0x40, 0x00, 0x1a, 0x0b) // memory.grow 0 drop end
}

// entryCheck returns the instruction sequence inserted at the start of
// every function body that makes a call; see InstrumentLoops. It counts
// the call against $tick like a loop iteration but reads $stop only when
// $tick runs out, which keeps the common path to one decrement and one
// test: a stop is then noticed within YieldInterval calls.
func entryCheck(stop, tick uint32, mem64 bool) []byte {
	b := appendU32([]byte{0x23}, tick)    // global.get $tick
	b = append(b, 0x41, 0x01, 0x6b, 0x24) // i32.const 1 i32.sub global.set
	b = appendU32(b, tick)                // $tick
	return append(b, yieldIfDue(stop, tick, mem64)...)
}

// yieldIfDue returns the sequence that, once $tick has run out, stops the
// guest if $stop is set, resets $tick and exits into Go: the tail of
// entryCheck, and what follows every bulk charge (bulkCharge), so
// that straight-line code of many large fills or copies yields between
// them too.
func yieldIfDue(stop, tick uint32, mem64 bool) []byte {
	b := appendU32([]byte{0x23}, tick)    // global.get $tick
	b = append(b, 0x41, 0x01, 0x48)       // i32.const 1 i32.lt_s
	b = append(b, 0x04, 0x40, 0x23)       // if global.get
	b = appendU32(b, stop)                // $stop
	b = append(b, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	b = append(b, 0x41)                   // i32.const
	b = appendS32(b, YieldInterval)       // YieldInterval
	b = appendU32(append(b, 0x24), tick)  // global.set $tick
	if mem64 {
		b = append(b, 0x42, 0x00) // i64.const 0
	} else {
		b = append(b, 0x41, 0x00) // i32.const 0
	}
	return append(b, 0x40, 0x00, 0x1a, 0x0b) // memory.grow 0 drop end
}

// codeRewrite is what instrumentCode inserts.
type codeRewrite struct {
	check, entry []byte // the loop and function entry sequences
	yield        []byte // what follows a bulk charge (yieldIfDue)
	tick         uint32 // $tick's index
	mem64        bool   // memory 0 has 64-bit lengths
	globals      uint32 // the size of the global index space before the rewrite
	// params returns the parameter count of every defined function. It
	// is called once, for the first body with a bulk instruction: a
	// module without any does not need its types decoded.
	params func() ([]uint32, error)
	// table64 reports a table with 64-bit limits (module.hasTable64). It
	// is called once, for the first body with a table instruction.
	table64 func() (bool, error)
}

// instrumentCode returns the payload of the code section whose payload is
// code (starting at absolute offset base) with rw.check inserted at the
// start of every loop body, rw.entry at the start of every body that makes
// a call, and a charge before every bulk instruction (bulkCharges), whose
// body gets scratch locals declared after its own.
func instrumentCode(code []byte, base int, rw *codeRewrite) ([]byte, error) {
	r := &reader{buf: code, base: base}
	n, err := r.count("function body count", 1)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(code)+len(code)/16)
	out = appendU32(out, n)
	var s bodyScan
	var params []uint32
	paramsDecoded, tablesDecoded := false, false
	var charges bulkCharges
	for i := uint32(0); i < n; i++ {
		body, err := r.nextBody(i)
		if err != nil {
			return nil, err
		}
		if err = scanBody(body, &s, rw.globals); err != nil {
			return nil, err
		}
		grown := uint64(len(body.buf)) + uint64(len(s.loops))*uint64(len(rw.check))
		if s.calls {
			grown += uint64(len(rw.entry))
		}
		var scratch uint32 // scratch locals
		if len(s.bulk) > 0 {
			if !paramsDecoded {
				if params, err = rw.params(); err != nil {
					return nil, err
				}
				paramsDecoded = true
			}
			if i >= uint32(len(params)) {
				return nil, errorf(body.base, "function body %d has no entry in the function section (%d entries)", i, len(params))
			}
			if err := checkTables(s.bulk, body.base, rw, &tablesDecoded); err != nil {
				return nil, err
			}
			if scratch, err = charges.plan(i, s.bulk, uint64(params[i])+s.locals, rw); err != nil {
				return nil, err
			}
			// The declaration count is re-encoded and the scratch locals'
			// declarations (2 bytes each) appended; grown >= size >= declsAt.
			grown = grown - uint64(s.declsAt) + uint64(lebLen(s.decls+scratch)) + uint64(len(charges.decls))
			for _, op := range s.bulk {
				grown += uint64(len(charges.of(op, rw.mem64)))
			}
		}
		if grown > math.MaxUint32 {
			return nil, fmt.Errorf("%w: function body %d would grow to %d bytes", ErrTooLarge, i, grown)
		}
		out = appendU32(out, uint32(grown))
		prev := 0
		if len(s.bulk) > 0 {
			out = appendU32(out, s.decls+scratch)
			out = append(out, body.buf[s.declsAt:s.entry]...)
			out = append(out, charges.decls...)
			prev = s.entry
		}
		if s.calls {
			out = append(out, body.buf[prev:s.entry]...)
			out = append(out, rw.entry...)
			prev = s.entry
		}
		// Merge the insertion points, both in body order. A loop whose
		// body starts with a bulk instruction gets the check first.
		for li, bi := 0, 0; li < len(s.loops) || bi < len(s.bulk); {
			if bi == len(s.bulk) || (li < len(s.loops) && s.loops[li] <= s.bulk[bi].at) {
				out = append(out, body.buf[prev:s.loops[li]]...)
				out = append(out, rw.check...)
				prev = s.loops[li]
				li++
			} else {
				op := s.bulk[bi]
				out = append(out, body.buf[prev:op.at]...)
				out = append(out, charges.of(op, rw.mem64)...)
				prev = op.at
				bi++
			}
		}
		out = append(out, body.buf[prev:]...)
	}
	if r.remaining() != 0 {
		return nil, r.fail("code section has %d trailing bytes", r.remaining())
	}
	return out, nil
}

// checkTables refuses the first table instruction among ops (of the body
// at absolute offset base) when the module has a 64-bit table, whose
// lengths the charge does not handle (ErrUnsupportedInstruction). The
// tables are decoded once, for the first body with a table instruction;
// *decoded records that they were, and had no 64-bit table.
func checkTables(ops []bulkOp, base int, rw *codeRewrite, decoded *bool) error {
	if *decoded {
		return nil
	}
	for _, op := range ops {
		if !op.table() {
			continue
		}
		t64, err := rw.table64()
		if err != nil {
			return err
		}
		if t64 {
			return unsupported(base+op.at, "opcode 0xfc %d in a module with a 64-bit table", op.sub)
		}
		*decoded = true
		return nil
	}
	return nil
}
