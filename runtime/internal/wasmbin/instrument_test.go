package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// mb builds a test module either as written (stop == false) or exactly as
// InstrumentLoops must rewrite it (stop == true): with the check at the
// start of every loop body, the stop and tick globals appended to the global
// section, the stop global's export appended to the export section and, for
// modules without memory, a memory. Comparing the two gives an oracle for
// the rewrite that does not depend on the code under test.
type mb struct {
	stop    bool
	stopIdx uint32 // index of the stop global: imported + defined globals
	mem64   bool   // memory 0 has 64-bit limits
}

// check is the sequence inserted at the start of every loop body.
func (b *mb) check() []byte {
	if !b.stop {
		return nil
	}
	t := uleb(uint64(b.stopIdx + 1))
	zero := cat(0x41, 0x00)
	if b.mem64 {
		zero = cat(0x42, 0x00)
	}
	return cat(
		0x23, uleb(uint64(b.stopIdx)), 0x04, 0x40, 0x00, 0x0b, // global.get $stop if unreachable end
		0x23, t, 0x41, 0x01, 0x6b, 0x24, t, // $tick -= 1
		0x23, t, 0x41, 0x01, 0x48, 0x04, 0x40, // if $tick < 1
		i32c(YieldInterval), 0x24, t, // $tick = YieldInterval
		zero, 0x40, 0x00, 0x1a, 0x0b, // drop(memory.grow(0)) end
	)
}

// entry is the sequence inserted at the start of every function body that
// makes a call: $tick counts the call, and $stop is read when it runs out.
func (b *mb) entry() []byte {
	if !b.stop {
		return nil
	}
	t := uleb(uint64(b.stopIdx + 1))
	zero := cat(0x41, 0x00)
	if b.mem64 {
		zero = cat(0x42, 0x00)
	}
	return cat(
		0x23, t, 0x41, 0x01, 0x6b, 0x24, t, // $tick -= 1
		0x23, t, 0x41, 0x01, 0x48, 0x04, 0x40, // if $tick < 1
		0x23, uleb(uint64(b.stopIdx)), 0x04, 0x40, 0x00, 0x0b, //   global.get $stop if unreachable end
		0x41, sleb(YieldInterval), 0x24, t, //   $tick = YieldInterval
		zero, 0x40, 0x00, 0x1a, 0x0b, //   memory.grow 0 drop end
	)
}

// bulk is the sequence inserted before every memory.copy and memory.fill
// (and memory.init, whose length is an i32, of a 32-bit memory) of a body
// whose scratch local has index local: $tick -= n >> bulkShift, where n,
// the length operand, stays on the stack, then the yield of entry() once
// $tick has run out.
func (b *mb) bulk(local uint32) []byte { return b.charge(local, b.mem64, bulkShift) }

// tableBulk is the sequence inserted before every table.init, table.copy
// and table.fill, whose i32 length counts entries: $tick -= n >>
// tableShift, then the yield.
func (b *mb) tableBulk(local uint32) []byte { return b.charge(local, false, tableShift) }

// charge is the charge of a length in the scratch local local, an i64 when
// wide, followed by the yield.
func (b *mb) charge(local uint32, wide bool, shift byte) []byte {
	if !b.stop {
		return nil
	}
	t, n := uleb(uint64(b.stopIdx+1)), uleb(uint64(local))
	zero := cat(0x41, 0x00)
	if b.mem64 {
		zero = cat(0x42, 0x00)
	}
	yield := cat(
		0x23, t, 0x41, 0x01, 0x48, 0x04, 0x40, // if $tick < 1
		0x23, uleb(uint64(b.stopIdx)), 0x04, 0x40, 0x00, 0x0b, //   global.get $stop if unreachable end
		0x41, sleb(YieldInterval), 0x24, t, //   $tick = YieldInterval
		zero, 0x40, 0x00, 0x1a, 0x0b, //   memory.grow 0 drop end
	)
	if wide {
		return cat(
			0x22, n, 0x23, t, // local.tee $n global.get $tick
			0x20, n, 0x42, shift, 0x88, 0xa7, // i32.wrap_i64(n >> shift)
			i32c(1<<(32-shift)),                 // or, from 4 GiB on, what 4 GiB costs:
			0x20, n, 0x42, 32, 0x88, 0x50, 0x1b, // select(..., ..., n >> 32 == 0)
			0x6b, 0x24, t, // i32.sub global.set $tick
			yield,
		)
	}
	return cat(
		0x22, n, 0x23, t, // local.tee $n global.get $tick
		0x20, n, 0x41, shift, 0x76, // n >> shift
		0x6b, 0x24, t, // i32.sub global.set $tick
		yield,
	)
}

// scratch appends to decls the declaration of the scratch local that
// InstrumentLoops adds to a body with bulk instructions whose lengths all
// have the memory's type (or are i32s, with a 32-bit memory).
func (b *mb) scratch(decls ...[]byte) [][]byte {
	t := byte(i32)
	if b.mem64 {
		t = i64
	}
	return b.scratchOf(decls, t)
}

// scratchOf appends to decls the declarations of scratch locals of the
// given types, one each.
func (b *mb) scratchOf(decls [][]byte, types ...byte) [][]byte {
	if !b.stop {
		return decls
	}
	out := decls[:len(decls):len(decls)]
	for _, t := range types {
		out = append(out, locals(1, t))
	}
	return out
}

// loop encodes loop bt instrs end; bt is a block type in any cat form.
func (b *mb) loop(bt any, instrs ...any) []byte {
	return cat(0x03, cat(bt), b.check(), cat(instrs...), opEnd)
}

// newGlobals are the globals InstrumentLoops appends: stop and tick.
func newGlobals() [][]byte {
	return [][]byte{global(i32, mutable, i32c(0)), global(i32, mutable, i32c(YieldInterval))}
}

// globals encodes the global section, or nothing when it would be empty.
// Callers put it where the global section belongs.
func (b *mb) globals(entries ...[]byte) []byte {
	if b.stop {
		entries = append(entries, newGlobals()...)
	}
	if len(entries) == 0 {
		return nil
	}
	return sec(6, vec(entries...))
}

// newMemory is the memory section InstrumentLoops adds to a module without
// memory.
func newMemory() []byte { return sec(5, vec(cat(0x01, 0x00, 0x00))) }

// mem encodes the memory section added to a module without memory; callers
// of a module without memory put it where the memory section belongs.
func (b *mb) mem() []byte {
	if !b.stop {
		return nil
	}
	return newMemory()
}

// exports encodes the export section, or nothing when it would be empty.
func (b *mb) exports(entries ...[]byte) []byte {
	if b.stop {
		entries = append(entries, export(StopGlobalName, 3, b.stopIdx))
	}
	if len(entries) == 0 {
		return nil
	}
	return sec(7, vec(entries...))
}

// Instruction helpers.
func block(bt any, instrs ...any) []byte { return cat(0x02, cat(bt), cat(instrs...), opEnd) }
func ifElse(bt any, then, els []byte) []byte {
	return cat(0x04, cat(bt), then, 0x05, els, opEnd)
}
func tryTable(bt any, catches []byte, instrs ...any) []byte {
	return cat(0x1f, cat(bt), catches, cat(instrs...), opEnd)
}
func localGet(i uint32) []byte { return cat(0x20, uleb(uint64(i))) }
func localSet(i uint32) []byte { return cat(0x21, uleb(uint64(i))) }
func localTee(i uint32) []byte { return cat(0x22, uleb(uint64(i))) }
func br(l uint32) []byte       { return cat(0x0c, uleb(uint64(l))) }
func brIf(l uint32) []byte     { return cat(0x0d, uleb(uint64(l))) }
func callF(f uint32) []byte    { return cat(0x10, uleb(uint64(f))) }

// memop encodes a load or store opcode with its memory argument.
func memop(op byte, align, offset uint32) []byte {
	return cat(op, uleb(uint64(align)), uleb(uint64(offset)))
}

// simd encodes a 0xfd instruction with the minimal encoding of sub.
func simd(sub uint32, imm ...any) []byte { return cat(0xfd, uleb(uint64(sub)), cat(imm...)) }

// misc encodes a 0xfc instruction.
func misc(sub uint32, imm ...any) []byte { return cat(0xfc, uleb(uint64(sub)), cat(imm...)) }

// atomic encodes a 0xfe instruction.
func atomic(sub byte, imm ...any) []byte { return cat(0xfe, sub, cat(imm...)) }

// bodyL encodes a function body with local declarations.
func bodyL(decls [][]byte, instrs ...any) []byte {
	b := cat(vec(decls...), cat(instrs...), opEnd)
	return cat(uleb(uint64(len(b))), b)
}

// locals encodes one local declaration: a count and a value type.
func locals(n uint32, t ...byte) []byte { return cat(uleb(uint64(n)), t) }

const (
	btEmpty = 0x40
	exnref  = 0x69
	i32Eqz  = 0x45
	i32GtS  = 0x4a
	i32GeS  = 0x4e
	i32Add  = 0x6a
	i32Sub  = 0x6b
	i32Mul  = 0x6c
	i32RemU = 0x70
)

// loopCall is a call of an exported function. want, when set, is the
// expected result; the instrumented module must always give the same
// result as the original.
type loopCall struct {
	fn   string
	args []uint64
	want []uint64
}

func callOf(fn string, args []uint64, want ...uint64) loopCall {
	return loopCall{fn: fn, args: args, want: want}
}

func args(v ...uint64) []uint64 { return v }

type loopCase struct {
	name  string
	build func(b *mb) []byte
	// loops is the number of loop instructions in the module.
	loops int
	// globals is the number of globals (imported and defined) before the
	// rewrite: the stop global's index.
	globals uint32
	// features for wazero; zero means api.CoreFeaturesV2.
	features api.CoreFeatures
	calls    []loopCall
	// stopCall runs at least one loop iteration, so it must trap while
	// the stop global is set.
	stopCall loopCall
}

// sumNested computes the sum over i < n of the sum over j < i of j with two
// nested loops, each inside a block that is the loop's exit.
func sumNested(b *mb) []byte {
	return cat(
		block(btEmpty, b.loop(btEmpty,
			localGet(1), localGet(0), i32GeS, brIf(1),
			i32c(0), localSet(2),
			block(btEmpty, b.loop(btEmpty,
				localGet(2), localGet(1), i32GeS, brIf(1),
				localGet(3), localGet(2), i32Add, localSet(3),
				localGet(2), i32c(1), i32Add, localSet(2),
				br(0),
			)),
			localGet(1), i32c(1), i32Add, localSet(1),
			br(0),
		)),
		localGet(3),
	)
}

var (
	tI32I32   = functype([]byte{i32}, []byte{i32})
	tI32x2I32 = functype([]byte{i32, i32}, []byte{i32})
	tI32      = functype([]byte{i32}, nil)
)

func loopCases() []loopCase {
	// c1 holds bytes that look like loop headers; they must be left alone.
	c1 := []byte{0x03, 0x40, 0x0b, 0x03, 0x40, 0x0b, 0x00, 0x01, 2, 3, 4, 5, 6, 7, 8, 9}
	return []loopCase{{
		name: "nested loops and every block type form",
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32, tRetI32, tI32x2I32)),
				sec(3, vec(uleb(0), uleb(0), uleb(0), uleb(1), uleb(1), uleb(0))),
				b.mem(),
				b.globals(),
				b.exports(export("nested", 0, 0), export("fact", 0, 1), export("fib", 0, 2),
					export("refs", 0, 3), export("padded", 0, 4), export("noloop", 0, 5)),
				sec(10, vec(
					bodyL([][]byte{locals(3, i32)}, sumNested(b)),
					// fact: loop (result i32), a value type block type.
					bodyL([][]byte{locals(1, i32)},
						i32c(1), localSet(1),
						b.loop(i32,
							localGet(1), localGet(0), i32Mul, localSet(1),
							localGet(0), i32c(1), i32Sub, localTee(0),
							i32c(1), i32GtS, brIf(0),
							localGet(1),
						),
					),
					// fib: loop (type 2) takes [i32 i32] and returns i32; an if
					// (result i32) returns or branches back with new params.
					bodyL([][]byte{locals(2, i32)},
						i32c(0), i32c(1),
						b.loop(uleb(2),
							localSet(2), localSet(1),
							localGet(0), i32Eqz,
							ifElse(i32, localGet(1), cat(
								localGet(0), i32c(1), i32Sub, localSet(0),
								localGet(2), localGet(1), localGet(2), i32Add,
								br(1),
							)),
						),
					),
					// refs: loops with reference and vector result types.
					bodyL(nil,
						b.loop(xref, 0xd0, xref), 0xd1,
						b.loop(fref, 0xd0, fref), 0xd1, i32Add,
						b.loop(v128, simd(12, c1)), simd(0x53), i32Add, // v128.any_true
					),
					// padded: block types in non-minimal encodings, the empty
					// type in two bytes and type index 1 in three.
					bodyL(nil,
						b.loop(cat(0xc0, 0x7f), 0x01),
						b.loop(cat(0x81, 0x80, 0x00), i32c(40)), i32c(2), i32Add,
					),
					// noloop: immediates that contain the loop opcode byte.
					bodyL([][]byte{locals(4, i32)},
						i32c(3), localSet(3), localGet(3),
						0x44, c1[:8], 0xaa, i32Add, // f64.const, i32.trunc_f64_s
						0x43, cat(0x03, 0x03, 0x03, 0x03), 0x1a, // f32.const, drop
						block(i32, i32c(0x203)), i32Add,
					),
				)),
			)
		},
		loops: 9,
		calls: []loopCall{
			callOf("nested", args(10), 120), callOf("nested", args(0), 0),
			callOf("fact", args(5), 120), callOf("fact", args(1), 1),
			callOf("fib", args(10), 55), callOf("fib", args(0), 0),
			callOf("refs", nil, 3),
			callOf("padded", nil, 42),
			callOf("noloop", args(0), 3+0x203),
		},
		stopCall: callOf("nested", args(3)),
	}, {
		name: "br_table, direct and indirect calls, typed select",
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32, tI32x2I32)),
				sec(3, vec(uleb(0), uleb(1), uleb(0))),
				sec(4, vec(cat(fref, 0x00, uleb(2)))),
				b.mem(),
				b.globals(global(i32, mutable, i32c(0)), global(i64, constant, i64c(3))),
				b.exports(export("brtable", 0, 0), export("callind", 0, 2)),
				sec(9, vec(cat(0x00, i32c(0), opEnd, vec(uleb(1), uleb(0))))),
				sec(10, vec(
					// brtable: loops through br_table until n%3 == 2 or n == 0.
					bodyL([][]byte{locals(1, i32)},
						block(btEmpty, b.loop(btEmpty,
							localGet(0), i32Eqz, brIf(1),
							localGet(0), i32c(1), i32Sub, localSet(0),
							localGet(1), i32c(7), i32Add, localSet(1),
							localGet(0), i32c(3), i32RemU,
							0x0e, vec(uleb(0), uleb(0), uleb(1)), uleb(0),
						)),
						localGet(1),
					),
					// add(x, y) = x + y, counting calls in global 0.
					bodyL(nil, globalGet(0), i32c(1), i32Add, globalSet(0), localGet(0), localGet(1), i32Add),
					// callind: adds n..1 through call_indirect and 1 per round
					// through call, then returns max(sum, 1000) with select t.
					bodyL([][]byte{locals(1, i32)}, b.entry(),
						block(btEmpty, b.loop(btEmpty,
							localGet(0), i32Eqz, brIf(1),
							localGet(1), localGet(0), i32c(0), 0x11, uleb(1), uleb(0), localSet(1),
							localGet(1), i32c(1), callF(1), localSet(1),
							localGet(0), i32c(1), i32Sub, localSet(0),
							br(0),
						)),
						localGet(1), i32c(1000), localGet(1), i32c(1000), i32GtS, 0x1c, vec([]byte{i32}),
					),
				)),
			)
		},
		loops:   2,
		globals: 2,
		calls: []loopCall{
			callOf("brtable", args(10), 14), callOf("brtable", args(1), 7), callOf("brtable", args(0), 0),
			callOf("callind", args(4), 1000), callOf("callind", args(100), 100*101/2+100),
		},
		stopCall: callOf("brtable", args(10)),
	}, {
		name: "memory instructions with offsets and alignments",
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32)),
				sec(3, vec(uleb(0))),
				sec(5, vec(cat(0x00, uleb(1)))),
				b.globals(),
				b.exports(export("mem", 0, 0)),
				sec(10, vec(bodyL([][]byte{locals(1, i32)},
					i32c(8), localGet(0), memop(0x36, 2, 100), // i32.store offset=100
					i32c(0), i64c(0x1122334455667788), memop(0x37, 3, 0x403), // i64.store offset=0x403
					block(btEmpty, b.loop(btEmpty,
						localGet(1), i32c(16), i32GeS, brIf(1),
						localGet(1), localGet(1), memop(0x3a, 0, 0x300), // i32.store8 offset=0x300
						localGet(1), i32c(1), i32Add, localSet(1),
						br(0),
					)),
					i32c(8), 0x28, uleb(2), cat(0xe4, 0x80, 0x80, 0x80, 0x00), // i32.load, offset 100 in 5 bytes
					i32c(0), memop(0x31, 0, 0x404), 0xa7, i32Add, // i64.load8_u, i32.wrap_i64
					i32c(0), memop(0x2d, 0, 0x30f), i32Add, // i32.load8_u offset=0x30f
					0x3f, 0x00, i32Add, // memory.size
					i32c(0), 0x40, 0x00, i32Add, // memory.grow
				))),
			)
		},
		loops:    1,
		calls:    []loopCall{callOf("mem", args(1000), 1000+0x77+15+1+1)},
		stopCall: callOf("mem", args(1)),
	}, {
		name: "0xfc bulk memory, table and saturating instructions",
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32, tRetI32)),
				sec(3, vec(uleb(0), uleb(1), uleb(0))),
				sec(4, vec(cat(fref, 0x00, uleb(4)), cat(xref, 0x00, uleb(1)))),
				sec(5, vec(cat(0x00, uleb(1)))),
				b.globals(),
				b.exports(export("bulk", 0, 0), export("tables", 0, 1), export("fill", 0, 2)),
				sec(9, vec(cat(0x01, 0x00, vec(uleb(0), uleb(1))))), // passive: funcs 0 and 1
				sec(12, uleb(1)),
				sec(10, vec(
					bodyL(b.scratch(locals(1, i32)), // the scratch local is 2
						i32c(0), i32c(7), i32c(64), b.bulk(2), misc(11, 0x00), // memory.fill
						block(btEmpty, b.loop(btEmpty,
							localGet(1), localGet(0), i32GeS, brIf(1),
							localGet(1), i32c(0), i32c(8), b.bulk(2), misc(10, 0x00, 0x00), // memory.copy
							localGet(1), i32c(1), i32Add, localSet(1),
							br(0),
						)),
						i32c(100), i32c(0), i32c(3), b.bulk(2), misc(8, uleb(0), 0x00), // memory.init data 0
						misc(9, uleb(0)), // data.drop 0
						i32c(0), memop(0x2d, 0, 0), i32c(100), memop(0x2d, 0, 0), i32Add,
						i32c(101), memop(0x2d, 0, 0), i32Add,
						0x43, cat(0x00, 0x00, 0x80, 0x7f), misc(0), i32Add, // i32.trunc_sat_f32_s(+inf)
						0x44, cat(0, 0, 0, 0, 0, 0, 0xf8, 0x7f), misc(3), i32Add, // i32.trunc_sat_f64_u(NaN)
						0xc0, // i32.extend8_s
					),
					bodyL(b.scratch(), // the scratch local is 0
						misc(16, uleb(0)),                              // table.size
						0xd0, fref, i32c(2), misc(15, uleb(0)), i32Add, // table.grow
						i32c(0), 0xd0, fref, i32c(6), b.tableBulk(0), misc(17, uleb(0)), // table.fill
						i32c(1), i32c(0), i32c(2), b.tableBulk(0), misc(12, uleb(0), uleb(0)), // table.init elem 0 table 0
						misc(13, uleb(0)),                                                     // elem.drop
						i32c(3), i32c(1), i32c(2), b.tableBulk(0), misc(14, uleb(0), uleb(0)), // table.copy
						i32c(4), 0x25, uleb(0), 0xd1, i32Add, // table.get, ref.is_null
						i32c(0), i32c(0), 0x25, uleb(0), 0x26, uleb(0), // table.set
						i32c(0), 0x25, uleb(0), 0xd1, i32Add,
						i32c(0), 0xd0, xref, 0x26, uleb(1),
						0xd2, uleb(0), 0xd1, i32Add, // ref.func
						b.loop(btEmpty),
					),
					// fill: memory.fill in a loop, n bytes of n at 1000.
					bodyL(b.scratch(),
						block(btEmpty, b.loop(btEmpty,
							localGet(0), i32Eqz, brIf(1),
							localGet(0), i32c(1000), i32Add, localGet(0), i32c(1), b.bulk(1), misc(11, 0x00),
							localGet(0), i32c(1), i32Sub, localSet(0),
							br(0),
						)),
						i32c(1003), memop(0x2d, 0, 0),
					),
				)),
				sec(11, vec(cat(0x01, str("\x05\x06\x07")))), // passive data
			)
		},
		loops:    3,
		calls:    []loopCall{callOf("bulk", args(5), 17), callOf("tables", nil, 9), callOf("fill", args(5), 3)},
		stopCall: callOf("fill", args(5)),
	}, {
		name: "0xfd SIMD",
		build: func(b *mb) []byte {
			lanes := []byte{0x03, 0x10, 0x0b, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x1f, 0x03}
			return wasmModule(
				sec(1, vec(tI32I32)),
				sec(3, vec(uleb(0))),
				sec(5, vec(cat(0x00, uleb(1)))),
				b.globals(),
				b.exports(export("simd", 0, 0)),
				sec(10, vec(bodyL([][]byte{locals(1, i32), locals(1, v128)},
					i32c(0), simd(12, c1), simd(11, 4, 16), // v128.store offset=16
					block(btEmpty, b.loop(btEmpty,
						localGet(1), i32c(3), i32GeS, brIf(1),
						i32c(0), i32c(0), simd(0, 4, 16), localTee(2), localGet(2),
						simd(0xae), simd(11, 4, 16), // i32x4.add: 0xfd 0xae 0x01
						localGet(1), i32c(1), i32Add, localSet(1),
						br(0),
					)),
					i32c(0), simd(0, 4, 16), simd(27, 1), // i32x4.extract_lane 1
					simd(12, c1), localGet(0), simd(15), simd(13, lanes), // i8x16.splat, i8x16.shuffle
					simd(22, 1), i32Add, // i8x16.extract_lane_u 1
					i32c(0), localGet(2), simd(86, 2, 20, 3), localSet(2), // v128.load32_lane lane 3
					localGet(2), simd(27, 3), i32Add,
					i32c(40), localGet(2), simd(88, 0, 0, 15), // v128.store8_lane lane 15
					i32c(40), memop(0x2d, 0, 0), i32Add,
					i32c(0), simd(92, 2, 16), simd(27, 0), i32Add, // v128.load32_zero
					i32c(0), simd(93, 3, 16), localGet(2), simd(0x8e), simd(27, 2), i32Add, // v128.load64_zero, i16x8.add
					i32c(0), simd(7, 0, 17), simd(21, 5), i32Add, // v128.load8_splat, i8x16.extract_lane_s
					localGet(2), i32c(9), simd(28, 1), simd(27, 1), i32Add, // i32x4.replace_lane
				))),
			)
		},
		loops:    1,
		calls:    []loopCall{callOf("simd", args(0x5a)), callOf("simd", args(0x01))},
		stopCall: callOf("simd", args(0)),
	}, {
		name:     "exception handling",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling,
		build: func(b *mb) []byte {
			catchTag0 := vec(cat(0x00, uleb(0), uleb(0)))
			return wasmModule(
				sec(1, vec(tI32, tI32I32, functype(nil, []byte{i32, exnref}))),
				sec(3, vec(uleb(1), uleb(1), uleb(1), uleb(1))),
				b.mem(),
				sec(13, vec(cat(0x00, uleb(0)))),
				b.globals(),
				b.exports(export("loopthrow", 0, 0), export("rethrow", 0, 1), export("catchall", 0, 2), export("catchref", 0, 3)),
				sec(10, vec(
					// loopthrow: sums n..1, each value thrown and caught.
					bodyL([][]byte{locals(1, i32)},
						block(btEmpty, b.loop(btEmpty,
							localGet(0), i32Eqz, brIf(1),
							block(i32, tryTable(i32, catchTag0, localGet(0), 0x08, uleb(0))),
							localGet(1), i32Add, localSet(1),
							localGet(0), i32c(1), i32Sub, localSet(0),
							br(0),
						)),
						localGet(1),
					),
					// rethrow: catch_all_ref, throw_ref, then catch the tag.
					bodyL(nil,
						block(i32, tryTable(i32, catchTag0,
							block(exnref,
								tryTable(btEmpty, vec(cat(0x03, uleb(0))), b.loop(btEmpty, localGet(0), 0x08, uleb(0))),
								0x00,
							),
							0x0a,
						)),
						i32c(1), i32Add,
					),
					// catchall: catch_all to an empty block.
					bodyL(nil,
						block(btEmpty, tryTable(btEmpty, vec(cat(0x02, uleb(0))), localGet(0), 0x08, uleb(0))),
						localGet(0), i32c(2), i32Mul,
					),
					// catchref: catch_ref to a block (type 2) of [i32 exnref].
					bodyL(nil,
						block(uleb(2), tryTable(uleb(2), vec(cat(0x01, uleb(0), uleb(0))), localGet(0), 0x08, uleb(0))),
						0x1a, i32c(3), i32Add,
					),
				)),
			)
		},
		loops: 2,
		calls: []loopCall{
			callOf("loopthrow", args(4), 10), callOf("rethrow", args(7), 8),
			callOf("catchall", args(5), 10), callOf("catchref", args(5), 8),
		},
		stopCall: callOf("loopthrow", args(1)),
	}, {
		name:     "tail calls",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesTailCall,
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32x2I32)),
				sec(3, vec(uleb(0), uleb(0))),
				sec(4, vec(cat(fref, 0x00, uleb(1)))),
				b.mem(),
				b.globals(),
				b.exports(export("count", 0, 0), export("countind", 0, 1)),
				sec(9, vec(cat(0x00, i32c(0), opEnd, vec(uleb(1))))),
				sec(10, vec(
					bodyL(nil, b.entry(), localGet(0), i32Eqz, ifElse(i32, localGet(1), cat(
						localGet(0), i32c(1), i32Sub, localGet(1), localGet(0), i32Add, 0x12, uleb(0), // return_call
					))),
					bodyL(nil, b.entry(), b.loop(i32, localGet(0), i32Eqz, ifElse(i32, localGet(1), cat(
						localGet(0), i32c(1), i32Sub, localGet(1), localGet(0), i32Add, i32c(0),
						0x13, uleb(0), uleb(0), // return_call_indirect
					)))),
				)),
			)
		},
		loops:    1,
		calls:    []loopCall{callOf("count", args(10, 0), 55), callOf("countind", args(100, 0), 5050)},
		stopCall: callOf("countind", args(3, 0)),
	}, {
		name:     "threads",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesThreads,
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32)),
				sec(3, vec(uleb(0))),
				sec(5, vec(cat(0x03, uleb(1), uleb(1)))), // shared memory
				b.globals(),
				b.exports(export("atomics", 0, 0)),
				sec(10, vec(bodyL([][]byte{locals(1, i32)},
					block(btEmpty, b.loop(btEmpty,
						localGet(1), localGet(0), i32GeS, brIf(1),
						i32c(0), i32c(3), atomic(0x1e, 2, 0), 0x1a, // i32.atomic.rmw.add, drop
						i32c(8), i64c(1), atomic(0x1f, 3, 0), 0x1a, // i64.atomic.rmw.add
						atomic(0x03, 0x00), // atomic.fence
						localGet(1), i32c(1), i32Add, localSet(1),
						br(0),
					)),
					i32c(0), atomic(0x10, 2, 0), // i32.atomic.load
					i32c(8), atomic(0x11, 3, 0), 0xa7, i32Add, // i64.atomic.load
					i32c(0), i32c(1), atomic(0x00, 2, 0), i32Add, // memory.atomic.notify
				))),
			)
		},
		loops:    1,
		calls:    []loopCall{callOf("atomics", args(5), 20)},
		stopCall: callOf("atomics", args(1)),
	}, {
		name:     "typed function references",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesTypedFunctionReferences,
		build: func(b *mb) []byte {
			return wasmModule(
				sec(1, vec(tI32I32)),
				sec(3, vec(uleb(0), uleb(0))),
				b.mem(),
				b.globals(),
				b.exports(export("inc", 0, 0), export("viaref", 0, 1)),
				sec(10, vec(
					bodyL(nil, localGet(0), i32c(1), i32Add),
					bodyL([][]byte{locals(1, 0x63, 0x00)}, // (ref null 0)
						b.entry(),
						0xd2, uleb(0), localSet(1),
						localGet(0),
						block(cat(0x64, 0x00), localGet(1), 0xd6, uleb(0), 0x00), // br_on_non_null
						0x14, uleb(0), // call_ref
						block(btEmpty, localGet(1), 0xd5, uleb(0), 0x1a), // br_on_null
						localGet(1), 0xd4, 0x1a, // ref.as_non_null
						b.loop(cat(0x63, 0x70), 0xd0, fref), 0x1a, // loop (result (ref null func))
						i32c(1), i32Add,
					),
				)),
			)
		},
		loops:    1,
		calls:    []loopCall{callOf("viaref", args(40), 42)},
		stopCall: callOf("viaref", args(0)),
	}}
}

func TestInstrumentLoops(t *testing.T) {
	for _, tc := range loopCases() {
		t.Run(tc.name, func(t *testing.T) {
			plain := tc.build(&mb{})
			want := tc.build(&mb{stop: true, stopIdx: tc.globals})
			check := (&mb{stop: true, stopIdx: tc.globals}).check()
			if n := bytes.Count(want, check) - bytes.Count(plain, check); n != tc.loops {
				t.Fatalf("test builder inserted %d checks, want %d", n, tc.loops)
			}
			in := bytes.Clone(plain)
			out, err := InstrumentLoops(in)
			if err != nil {
				t.Fatalf("InstrumentLoops: %v", err)
			}
			if !bytes.Equal(in, plain) {
				t.Fatal("input was modified")
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("output\n%x\nwant\n%x", out, want)
			}
			checkStopExported(t, out, tc.globals)
			runLoopCase(t, tc, plain, out)
		})
	}
}

// checkStopExported checks that ExportMutableGlobals accepts the
// instrumented module and lists the stop global under its name.
func checkStopExported(t *testing.T, out []byte, idx uint32) {
	t.Helper()
	_, exports, err := ExportMutableGlobals(out)
	if err != nil {
		t.Fatalf("ExportMutableGlobals rejected the output: %v", err)
	}
	for _, e := range exports {
		if e.Index == idx && e.Name == StopGlobalName {
			return
		}
	}
	t.Fatalf("ExportMutableGlobals lists %v, without %s (global %d)", exports, StopGlobalName, idx)
}

// runLoopCase instantiates both modules with the compiler and without
// wazero's termination checks, compares every call, then checks that the
// stop global stops a loop and that clearing it lets the guest run again.
func runLoopCase(t *testing.T, tc loopCase, plain, out []byte) {
	t.Helper()
	ctx := context.Background()
	features := tc.features
	if features == 0 {
		features = api.CoreFeaturesV2
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(features))
	defer r.Close(ctx)
	orig, err := r.InstantiateWithConfig(ctx, plain, wazero.NewModuleConfig().WithName("orig"))
	if err != nil {
		t.Fatalf("instantiate the original: %v", err)
	}
	inst, err := r.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName("inst"))
	if err != nil {
		t.Fatalf("instantiate the instrumented module: %v", err)
	}
	for _, c := range tc.calls {
		got, err := inst.ExportedFunction(c.fn).Call(ctx, c.args...)
		if err != nil {
			t.Fatalf("%s%v: %v", c.fn, c.args, err)
		}
		ref, err := orig.ExportedFunction(c.fn).Call(ctx, c.args...)
		if err != nil {
			t.Fatalf("original %s%v: %v", c.fn, c.args, err)
		}
		if !equalU64(got, ref) {
			t.Errorf("%s%v = %v, original gives %v", c.fn, c.args, got, ref)
		}
		if c.want != nil && !equalU64(got, c.want) {
			t.Errorf("%s%v = %v, want %v", c.fn, c.args, got, c.want)
		}
	}
	g, ok := inst.ExportedGlobal(StopGlobalName).(api.MutableGlobal)
	if !ok {
		t.Fatalf("%s is not an exported mutable global", StopGlobalName)
	}
	if g.Type() != api.ValueTypeI32 || g.Get() != 0 {
		t.Fatalf("%s = %s %d, want i32 0", StopGlobalName, api.ValueTypeName(g.Type()), g.Get())
	}
	sc := tc.stopCall
	g.Set(1)
	if _, err := inst.ExportedFunction(sc.fn).Call(ctx, sc.args...); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("%s%v with the stop global set: %v, want an unreachable trap", sc.fn, sc.args, err)
	}
	g.Set(0)
	if _, err := inst.ExportedFunction(sc.fn).Call(ctx, sc.args...); err != nil {
		t.Errorf("%s%v after clearing the stop global: %v", sc.fn, sc.args, err)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// spinModule exports spin, an infinite loop counting its iterations in the
// exported global "count".
func spinModule() []byte {
	return wasmModule(
		sec(1, vec(tVoid)),
		sec(3, vec(uleb(0))),
		sec(6, vec(global(i64, mutable, i64c(0)))),
		sec(7, vec(export("spin", 0, 0), export("count", 3, 0))),
		sec(10, vec(body(0x03, btEmpty, globalGet(0), i64c(1), 0x7c, globalSet(0), br(0), opEnd))),
	)
}

// spinInstrumented instruments plain, instantiates it in a wazero runtime
// of its own (closed when the test ends, after its deferred calls) and
// calls its "spin" export on a goroutine; done receives the call's error.
func spinInstrumented(t *testing.T, plain []byte) (mod api.Module, done <-chan error) {
	t.Helper()
	out, err := InstrumentLoops(plain)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { _ = r.Close(ctx) })
	if mod, err = r.Instantiate(ctx, out); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		ch <- err
	}()
	return mod, ch
}

func TestInstrumentLoopsStopsInfiniteLoop(t *testing.T) {
	mod, done := spinInstrumented(t, spinModule())
	deadline := time.After(10 * time.Second)
	count := mod.ExportedGlobal("count")
	for count.Get() < 1000 {
		select {
		case err := <-done:
			t.Fatalf("spin returned before it was stopped: %v", err)
		case <-deadline:
			t.Fatal("spin did not start within 10s")
		case <-time.After(time.Millisecond):
		}
	}
	mod.ExportedGlobal(StopGlobalName).(api.MutableGlobal).Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin returned %v, want an unreachable trap", err)
		}
		t.Logf("stopped after %d iterations: %v", count.Get(), err)
	case <-deadline:
		t.Fatal("spin still running 10s after the stop global was set")
	}
}

func TestInstrumentLoopsSectionPlacement(t *testing.T) {
	hdr := wasmModule()
	ng := newGlobals()
	stopExport := func(idx uint32) []byte { return export(StopGlobalName, 3, idx) }
	check := func(idx uint32) []byte { return (&mb{stop: true, stopIdx: idx}).check() }
	m32, m64 := &mb{stop: true}, &mb{stop: true, mem64: true}
	tI32x3 := functype([]byte{i32, i32, i32}, nil)
	decls127 := make([][]byte, 127)
	for i := range decls127 {
		decls127[i] = locals(1, i32)
	}
	// bodyPadded encodes a body like bodyL, with its declaration count
	// in five bytes.
	bodyPadded := func(decls [][]byte, instrs ...any) []byte {
		b := cat(paddedLEB(uint32(len(decls))), cat(anys(decls)...), cat(instrs...), opEnd)
		return cat(uleb(uint64(len(b))), b)
	}
	tag := sec(13, vec(cat(0x00, uleb(0))))
	envMemory := wasmModule(sec(5, vec(cat(0x00, uleb(1)))), sec(7, vec(export("m", 2, 0))))
	for _, tc := range []struct {
		name      string
		in, want  []byte
		env       []byte
		features  api.CoreFeatures
		parseOnly bool
	}{{
		name: "empty module",
		in:   hdr,
		want: wasmModule(newMemory(), sec(6, vec(ng...)), sec(7, vec(stopExport(0)))),
	}, {
		name: "memory, global and export sections created between custom sections",
		in: wasmModule(
			custom("a", "1"), sec(1, vec(tVoid)), sec(3, vec(uleb(0))), custom("b", "2"),
			sec(8, uleb(0)), custom("c", "3"), sec(10, vec(body(0x03, btEmpty, opEnd))), custom("d", "4"),
		),
		want: wasmModule(
			custom("a", "1"), sec(1, vec(tVoid)), sec(3, vec(uleb(0))),
			newMemory(), sec(6, vec(ng...)), sec(7, vec(stopExport(0))), custom("b", "2"),
			sec(8, uleb(0)), custom("c", "3"), sec(10, vec(body(0x03, btEmpty, check(0), opEnd))), custom("d", "4"),
		),
	}, {
		name: "an empty memory section gets the memory",
		in:   wasmModule(sec(5, vec()), custom("m", ""), sec(6, vec(global(i32, constant, i32c(1))))),
		want: wasmModule(newMemory(), custom("m", ""), sec(6, vec(append([][]byte{global(i32, constant, i32c(1))}, ng...)...)), sec(7, vec(stopExport(1)))),
	}, {
		name:     "global section created after the tag section",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling,
		in: wasmModule(
			sec(1, vec(tI32)), sec(5, vec(cat(0x00, uleb(0)))), tag, custom("after-tag", ""),
			sec(7, vec(export("t", 4, 0))),
		),
		want: wasmModule(
			sec(1, vec(tI32)), sec(5, vec(cat(0x00, uleb(0)))), tag, sec(6, vec(ng...)), custom("after-tag", ""),
			sec(7, vec(export("t", 4, 0), stopExport(0))),
		),
	}, {
		name: "imported globals come first in the index space",
		env: wasmModule(
			sec(6, vec(global(i32, mutable, i32c(3)), global(i64, constant, i64c(4)))),
			sec(7, vec(export("g", 3, 0), export("c", 3, 1))),
		),
		in: wasmModule(
			sec(1, vec(tRetI32)),
			sec(2, vec(imp("env", "g", 3, i32, mutable), imp("env", "c", 3, i64, constant))),
			sec(3, vec(uleb(0))),
			sec(6, vec(global(i32, constant, i32c(5)))),
			sec(7, vec(export("f", 0, 0))),
			sec(10, vec(body(0x03, i32, globalGet(0), globalGet(2), i32Add, opEnd))),
		),
		want: wasmModule(
			sec(1, vec(tRetI32)),
			sec(2, vec(imp("env", "g", 3, i32, mutable), imp("env", "c", 3, i64, constant))),
			sec(3, vec(uleb(0))),
			newMemory(),
			sec(6, vec(append([][]byte{global(i32, constant, i32c(5))}, ng...)...)),
			sec(7, vec(export("f", 0, 0), stopExport(3))),
			sec(10, vec(body(0x03, i32, check(3), globalGet(0), globalGet(2), i32Add, opEnd))),
		),
	}, {
		name: "an imported memory is used",
		env:  envMemory,
		in: wasmModule(
			sec(1, vec(tVoid)), sec(2, vec(imp("env", "m", 2, 0x00, uleb(1)))), sec(3, vec(uleb(0))),
			sec(10, vec(body(0x03, btEmpty, opEnd))),
		),
		want: wasmModule(
			sec(1, vec(tVoid)), sec(2, vec(imp("env", "m", 2, 0x00, uleb(1)))), sec(3, vec(uleb(0))),
			sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(10, vec(body(0x03, btEmpty, check(0), opEnd))),
		),
	}, {
		name:      "a 64-bit memory is grown with an i64 (parse only: wazero has no memory64)",
		parseOnly: true,
		in: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(10, vec(body(0x03, btEmpty, opEnd))),
		),
		want: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(10, vec(body(0x03, btEmpty, (&mb{stop: true, mem64: true}).check(), opEnd))),
		),
	}, {
		name:      "a 64-bit memory's bulk lengths are i64 (parse only)",
		parseOnly: true,
		in: wasmModule(
			sec(1, vec(functype([]byte{i64}, nil))), sec(3, vec(uleb(0))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(10, vec(bodyL([][]byte{locals(1, i64)}, i64c(0), i32c(0), localGet(0), misc(11, 0x00)))),
		),
		want: wasmModule(
			sec(1, vec(functype([]byte{i64}, nil))), sec(3, vec(uleb(0))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(10, vec(bodyL(m64.scratch(locals(1, i64)), i64c(0), i32c(0), localGet(0), m64.bulk(2), misc(11, 0x00)))),
		),
	}, {
		// memory.init's length is an i32 in a 64-bit memory too (a data
		// segment's offsets are), and so are the table instructions' (a
		// 32-bit table's): they share an i32 scratch local, declared
		// after the i64 one of memory.fill and memory.copy.
		name:      "a 64-bit memory's memory.init and table lengths are i32s (parse only)",
		parseOnly: true,
		in: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0), uleb(0))), sec(4, vec(cat(fref, 0x00, uleb(4)))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(12, uleb(1)),
			sec(10, vec(
				bodyL(nil,
					i64c(0), i32c(0), i64c(8), misc(11, 0x00), // memory.fill
					i64c(0), i32c(0), i32c(1), misc(8, uleb(0), 0x00), // memory.init
					i32c(0), 0xd0, fref, i32c(4), misc(17, uleb(0)), // table.fill
				),
				bodyL(nil, i32c(0), i32c(1), i32c(2), misc(14, uleb(0), uleb(0))), // table.copy
			)),
			sec(11, vec(cat(0x01, str("x")))),
		),
		want: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0), uleb(0))), sec(4, vec(cat(fref, 0x00, uleb(4)))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(12, uleb(1)),
			sec(10, vec(
				bodyL(m64.scratchOf(nil, i64, i32),
					i64c(0), i32c(0), i64c(8), m64.bulk(0), misc(11, 0x00),
					i64c(0), i32c(0), i32c(1), m64.charge(1, false, bulkShift), misc(8, uleb(0), 0x00),
					i32c(0), 0xd0, fref, i32c(4), m64.tableBulk(1), misc(17, uleb(0)),
				),
				bodyL(m64.scratchOf(nil, i32), i32c(0), i32c(1), i32c(2), m64.tableBulk(0), misc(14, uleb(0), uleb(0))),
			)),
			sec(11, vec(cat(0x01, str("x")))),
		),
	}, {
		// The scratch local follows the parameters and the locals; its
		// declaration is appended, the declaration count re-encoded
		// (here from one byte to two, and from a padded encoding).
		name: "bulk instructions get a scratch local",
		in: wasmModule(
			sec(1, vec(tI32x3, tVoid)), sec(3, vec(uleb(0), uleb(1))),
			sec(5, vec(cat(0x00, uleb(1)))), sec(7, vec(export("f", 0, 0))),
			sec(12, uleb(1)),
			sec(10, vec(
				bodyL(decls127,
					localGet(0), localGet(1), localGet(2),
					0x03, uleb(0), misc(11, 0x00), opEnd, // a loop (param i32 i32 i32) starting with memory.fill
					i32c(0), i32c(0), i32c(1), misc(8, uleb(0), 0x00),
					localGet(0), localGet(1), localGet(2), callF(0),
				),
				bodyPadded(nil, i32c(0), i32c(0), i32c(1), misc(10, 0x00, 0x00)),
			)),
			sec(11, vec(cat(0x01, str("x")))),
		),
		want: wasmModule(
			sec(1, vec(tI32x3, tVoid)), sec(3, vec(uleb(0), uleb(1))),
			sec(5, vec(cat(0x00, uleb(1)))),
			sec(6, vec(ng...)), sec(7, vec(export("f", 0, 0), stopExport(0))),
			sec(12, uleb(1)),
			sec(10, vec(
				bodyL(m32.scratch(decls127...), m32.entry(),
					localGet(0), localGet(1), localGet(2),
					0x03, uleb(0), check(0), m32.bulk(130), misc(11, 0x00), opEnd,
					i32c(0), i32c(0), i32c(1), m32.bulk(130), misc(8, uleb(0), 0x00),
					localGet(0), localGet(1), localGet(2), callF(0),
				),
				bodyL(m32.scratch(), i32c(0), i32c(0), i32c(1), m32.bulk(0), misc(10, 0x00, 0x00)),
			)),
			sec(11, vec(cat(0x01, str("x")))),
		),
	}, {
		name:      "types are decoded only for bulk instructions (parse only: a GC type)",
		parseOnly: true,
		in: wasmModule(
			sec(1, vec(tVoid, cat(0x5f, 0x00))), sec(3, vec(uleb(0))),
			sec(10, vec(body(0x03, btEmpty, opEnd))),
		),
		want: wasmModule(
			sec(1, vec(tVoid, cat(0x5f, 0x00))), sec(3, vec(uleb(0))),
			newMemory(), sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(10, vec(body(0x03, btEmpty, check(0), opEnd))),
		),
	}, {
		name: "stop index needing two LEB128 bytes",
		in: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))),
			sec(6, vec(manyGlobals(200)...)),
			sec(10, vec(body(0x03, btEmpty, 0x03, btEmpty, opEnd, opEnd))),
		),
		want: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))),
			newMemory(),
			sec(6, vec(append(manyGlobals(200), ng...)...)),
			sec(7, vec(stopExport(200))),
			sec(10, vec(body(0x03, btEmpty, check(200), 0x03, btEmpty, check(200), opEnd, opEnd))),
		),
	}, {
		name: "function bodies with locals and sizes that grow past 127 bytes",
		in: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0), uleb(0))),
			sec(10, vec(
				bodyL([][]byte{locals(2, i32), locals(1, v128), locals(3, fref)}, bytes.Repeat(cat(0x03, btEmpty, opEnd), 40)),
				cat(paddedLEB(3), 0x00, 0x01, opEnd),
			)),
		),
		want: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0), uleb(0))),
			newMemory(), sec(6, vec(ng...)), sec(7, vec(stopExport(0))),
			sec(10, vec(
				bodyL([][]byte{locals(2, i32), locals(1, v128), locals(3, fref)}, bytes.Repeat(cat(0x03, btEmpty, check(0), opEnd), 40)),
				cat(uleb(3), 0x00, 0x01, opEnd),
			)),
		),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := InstrumentLoops(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tc.want) {
				t.Fatalf("output\n%x\nwant\n%x", out, tc.want)
			}
			if tc.parseOnly {
				return
			}
			features := tc.features
			if features == 0 {
				features = api.CoreFeaturesV2
			}
			ctx := context.Background()
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(features))
			defer r.Close(ctx)
			if tc.env != nil {
				if _, err := r.InstantiateWithConfig(ctx, tc.env, wazero.NewModuleConfig().WithName("env")); err != nil {
					t.Fatal(err)
				}
			}
			mod, err := r.InstantiateWithConfig(ctx, out, wazero.NewModuleConfig().WithName(""))
			if err != nil {
				t.Fatalf("wazero rejected the output: %v", err)
			}
			if _, ok := mod.ExportedGlobal(StopGlobalName).(api.MutableGlobal); !ok {
				t.Fatalf("%s is not an exported mutable global", StopGlobalName)
			}
		})
	}
}

func manyGlobals(n int) [][]byte {
	gs := make([][]byte, n)
	for i := range gs {
		gs[i] = global(i32, constant, i32c(int32(i)))
	}
	return gs
}

func TestHasStartSection(t *testing.T) {
	if HasStartSection(counterModule()) != true {
		t.Error("counterModule has a start section")
	}
	if HasStartSection(spinModule()) {
		t.Error("spinModule has no start section")
	}
	if HasStartSection([]byte("\x00asm\x01\x00\x00\x00\x08\x05")) {
		t.Error("malformed module reported as having a start section")
	}
}

func TestIsGoModule(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		want bool
	}{
		{"hand-built module", spinModule(), false},
		{"custom section with another name", wasmModule(custom("go:buildidx", "x"), custom("name", "")), false},
		{"go:buildid section", wasmModule(custom("name", ""), custom("go:buildid", "id")), true},
		{"malformed after the section", append(wasmModule(custom("go:buildid", "id")), 0x08, 0x05), false},
		{"not wasm", []byte("go:buildid"), false},
	} {
		if got := IsGoModule(tc.wasm); got != tc.want {
			t.Errorf("%s: IsGoModule = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsGoModuleGoToolchain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go guest with the Go toolchain (seconds); runs without -short")
	}
	if !IsGoModule(buildGoGuest(t)) {
		t.Error("a module built by the Go toolchain is not recognised")
	}
}

func TestInstrumentLoopsErrors(t *testing.T) {
	// fn wraps a function body (without size) into a module.
	fn := func(bodyBytes ...any) []byte {
		b := cat(bodyBytes...)
		return wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(10, vec(cat(uleb(uint64(len(b))), b))))
	}
	// bodyAt is the offset of the first instruction of a short body with
	// no locals in a module built by fn.
	bodyAt := len(fn(0x00))
	fill3 := cat(i32c(0), i32c(0), i32c(0)) // the operands of a bulk memory instruction
	for _, tc := range []struct {
		name   string
		wasm   []byte
		target error
		want   string
	}{
		{"name conflict", wasmModule(sec(6, vec(global(i32, mutable, i32c(0)))), sec(7, vec(export(StopGlobalName, 3, 0)))), ErrNameConflict, StopGlobalName},
		{"name conflict with a function", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(7, vec(export(StopGlobalName, 0, 0))), sec(10, vec(body()))), ErrNameConflict, StopGlobalName},
		{"malformed header", []byte("\x00asm"), ErrMalformed, "version"},
		{"legacy try", fn(0x00, 0x06, btEmpty, opEnd, opEnd), ErrUnsupportedInstruction, "opcode 0x06 at byte offset " + strconv.Itoa(bodyAt)},
		{"ref.eq", fn(0x00, 0xd3, opEnd), ErrUnsupportedInstruction, "opcode 0xd3"},
		{"GC prefix", fn(0x00, 0xfb, 0x00, opEnd), ErrUnsupportedInstruction, "opcode 0xfb"},
		{"unknown 0xfc", fn(0x00, 0xfc, 18, opEnd), ErrUnsupportedInstruction, "opcode 0xfc 18"},
		{"SIMD opcode above 255", fn(0x00, 0xfd, 0x80, 0x02, opEnd), ErrUnsupportedInstruction, "opcode 0xfd 256"},
		{"relaxed SIMD", fn(0x00, 0xfd, 0x85, 0x02, opEnd), ErrUnsupportedInstruction, "opcode 0xfd 261"},
		{"padded SIMD opcode", fn(0x00, 0xfd, 0x8c, 0x00, zeros16, opEnd), ErrUnsupportedInstruction, "encoding 8c 00 of opcode 0xfd 12"},
		{"SIMD hole", fn(0x00, 0xfd, 0x9a, 0x01, opEnd), ErrUnsupportedInstruction, "opcode 0xfd 154"},
		{"unknown atomic", fn(0x00, 0xfe, 0x04, opEnd), ErrUnsupportedInstruction, "opcode 0xfe 4"},
		{"padded atomic opcode", fn(0x00, 0xfe, 0x90, 0x00, 0x02, 0x00, opEnd), ErrUnsupportedInstruction, "opcode 0xfe 16"},
		{"GC block type", fn(0x00, 0x03, 0x6e, opEnd, opEnd), ErrUnsupportedInstruction, "block type -18"},
		{"GC heap type", fn(0x00, 0xd0, 0x6e, 0x1a, opEnd), ErrUnsupportedInstruction, "heap type -18"},
		{"GC local type", fn(0x01, 0x01, 0x6e, opEnd), ErrUnsupportedInstruction, "local type 0x6e"},
		{"global.set of the stop global's future index", wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(6, vec(global(i32, mutable, i32c(0)))),
			sec(10, vec(body(0x03, btEmpty, i32c(0), globalSet(1), br(0), opEnd))),
		), ErrMalformed, "global index 1 out of range (1 globals)"},
		{"global.get out of range", fn(0x00, globalGet(0), 0x1a, opEnd), ErrMalformed, "global index 0 out of range (0 globals)"},
		{"missing end", fn(0x00, 0x01), ErrMalformed, "ends inside 1 unclosed blocks"},
		{"unclosed loop", fn(0x00, 0x03, btEmpty, opEnd), ErrMalformed, "ends inside 1 unclosed blocks"},
		{"bytes after the end", fn(0x00, opEnd, 0x01), ErrMalformed, "1 bytes follow the end of the function body"},
		{"truncated block type", fn(0x00, 0x03), ErrMalformed, "block type"},
		{"overlong block type", fn(0x00, 0x03, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x7f, opEnd, opEnd), ErrMalformed, "block type: LEB128 longer than 5 bytes"},
		{"truncated i32.const", fn(0x00, 0x41, 0x80), ErrMalformed, "i32.const immediate"},
		{"truncated f64.const", fn(0x00, 0x44, 0, 0, 0, opEnd), ErrMalformed, "f64.const immediate"},
		{"truncated v128.const", fn(0x00, 0xfd, 0x0c, 1, 2, 3, opEnd), ErrMalformed, "v128 immediate"},
		{"truncated lane index", fn(0x00, 0xfd, 0x15), ErrMalformed, "lane index"},
		{"huge br_table", fn(0x00, 0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f, opEnd), ErrMalformed, "br_table label count"},
		{"truncated br_table", fn(0x00, 0x0e, 0x02, 0x00, 0x00), ErrMalformed, "br_table label"},
		{"memarg alignment out of range", fn(0x00, 0x28, 0x80, 0x01, 0x00, opEnd), ErrMalformed, "alignment flags 0x80"},
		{"truncated memarg", fn(0x00, 0x28, 0x02), ErrMalformed, "memory argument offset"},
		{"truncated memory index", fn(0x00, 0x28, 0x42), ErrMalformed, "memory argument memory index"},
		{"unknown catch kind", fn(0x00, 0x1f, btEmpty, 0x01, 0x04, 0x00, opEnd, opEnd), ErrMalformed, "unknown catch clause kind 4"},
		{"huge locals count", fn(0xff, 0xff, 0xff, 0xff, 0x0f), ErrMalformed, "local declaration count"},
		{"truncated select types", fn(0x00, 0x1c, 0x02, i32), ErrMalformed, "select type"},
		{"body larger than the section", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(10, 0x01, 0x05, 0x00, opEnd)), ErrMalformed, "function body 0 size 5 exceeds the 2 remaining bytes"},
		{"trailing bytes in the code section", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(10, vec(body()), 0x00)), ErrMalformed, "code section has 1 trailing bytes"},
		{"huge body count", wasmModule(sec(10, 0xff, 0xff, 0xff, 0xff, 0x0f)), ErrMalformed, "function body count"},
		{"memory.fill of memory 1", fn(0x00, fill3, misc(11, 0x01), opEnd), ErrUnsupportedInstruction, "opcode 0xfc 11 on a memory other than memory 0"},
		{"memory.copy from memory 1", fn(0x00, fill3, misc(10, 0x00, 0x01), opEnd), ErrUnsupportedInstruction, "opcode 0xfc 10 on a memory other than memory 0"},
		{"memory.init of memory 1", fn(0x00, fill3, misc(8, 0x00, 0x01), opEnd), ErrUnsupportedInstruction, "opcode 0xfc 8 on a memory other than memory 0"},
		{"bulk instruction without a function section", wasmModule(sec(1, vec(tVoid)), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrMalformed, "function body 0 has no entry in the function section (0 entries)"},
		{"function type index out of range", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(1))), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrMalformed, "function type index 1 out of range (1 types)"},
		{"GC type", wasmModule(sec(1, vec(cat(0x5f, 0x00))), sec(3, vec(uleb(0))), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrMalformed, "function type starts with 0x5f, not 0x60"},
		{"GC parameter type", wasmModule(sec(1, vec(functype([]byte{0x6e}, nil))), sec(3, vec(uleb(0))), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrUnsupportedInstruction, "parameter type 0x6e"},
		{"truncated type section", wasmModule(sec(1, 0x01, 0x60, 0x01), sec(3, vec(uleb(0))), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrMalformed, "parameter count"},
		{"trailing bytes in the function section", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0)), 0x00), sec(10, vec(body(fill3, misc(11, 0x00))))),
			ErrMalformed, "function section has 1 trailing bytes"},
		{"no local index left for the scratch local", fn(0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, i32, fill3, misc(11, 0x00), opEnd),
			ErrTooLarge, "function body 0 has 4294967295 parameters and locals"},
		{"no local index left for the second scratch local (64-bit memory)", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(5, vec(cat(0x04, uleb(1)))),
			sec(10, vec(bodyL([][]byte{locals(0xfffffffe, i32)}, fill3, misc(11, 0x00), fill3, misc(17, uleb(0)))))),
			ErrTooLarge, "function body 0 has 4294967294 parameters and locals"},
		{"table.fill of a 64-bit table", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(4, vec(cat(fref, 0x04, uleb(1)))),
			sec(10, vec(body(fill3, misc(17, uleb(0)))))),
			ErrUnsupportedInstruction, "opcode 0xfc 17 in a module with a 64-bit table"},
		{"table.copy with an imported 64-bit table", wasmModule(sec(1, vec(tVoid)), sec(2, vec(imp("env", "t", 1, fref, 0x04, uleb(1)))), sec(3, vec(uleb(0))),
			sec(10, vec(body(fill3, misc(14, uleb(0), uleb(0)))))),
			ErrUnsupportedInstruction, "opcode 0xfc 14 in a module with a 64-bit table"},
		{"table.init with a table initializer", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(4, vec(cat(0x40, 0x00, fref, 0x00, uleb(1), 0xd0, fref, opEnd))),
			sec(10, vec(body(fill3, misc(12, uleb(0), uleb(0)))))),
			ErrUnsupportedInstruction, "table 0 has element type 0x40"},
		{"truncated table section", wasmModule(sec(1, vec(tVoid)), sec(3, vec(uleb(0))), sec(4, 0x01, fref, 0x01, 0x01),
			sec(10, vec(body(fill3, misc(17, uleb(0)))))),
			ErrMalformed, "table limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.wasm)
			out, err := InstrumentLoops(in)
			if !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
			for _, other := range []error{ErrMalformed, ErrNameConflict, ErrTooLarge, ErrUnsupportedInstruction} {
				if other != tc.target && errors.Is(err, other) {
					t.Errorf("err = %v also wraps %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			if out != nil {
				t.Error("non-nil output with an error")
			}
			if !bytes.Equal(in, tc.wasm) {
				t.Error("input was modified")
			}
		})
	}
}

func TestInstrumentLoopsNotIdempotent(t *testing.T) {
	once, err := InstrumentLoops(spinModule())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InstrumentLoops(once); !errors.Is(err, ErrNameConflict) {
		t.Fatalf("second InstrumentLoops: %v, want ErrNameConflict", err)
	}
	again, err := InstrumentLoops(spinModule())
	if err != nil || !bytes.Equal(again, once) {
		t.Fatalf("InstrumentLoops is not deterministic: %v", err)
	}
}

// TestInstrumentLoopsSelectRefTypeDesync covers a disagreement between
// wazero v1.12's validator and compiler: for select with a (ref null $t)
// type, the compiler skips one byte too few and reads the heap type, here
// 0x03, as a loop whose block type 0x70 the validator reads as i32.rem_u.
// The compiled function spins in a loop that the validator (and a decoder
// agreeing with it) never saw, so InstrumentLoops must refuse the module.
func TestInstrumentLoopsSelectRefTypeDesync(t *testing.T) {
	code := cat(i32c(5), i32c(1), i32c(2), i32c(1), 0x1c, 0x01, 0x63, 0x03, 0x70, br(0))
	m := wasmModule(
		sec(1, vec(tRetI32, tVoid, tVoid, tVoid)), sec(3, vec(uleb(0))),
		sec(7, vec(export("f", 0, 0))), sec(10, vec(body(code))),
	)
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, m); err != nil {
		t.Skipf("wazero no longer accepts the module: %v", err)
	}
	if _, err := InstrumentLoops(m); !errors.Is(err, ErrUnsupportedInstruction) {
		t.Fatalf("InstrumentLoops: %v, want ErrUnsupportedInstruction", err)
	}
	// The fallback, wazero's own checks, sees the compiler's loops.
	safe := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true))
	defer safe.Close(ctx)
	mod, err := safe.Instantiate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("f").Call(cctx)
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("with CloseOnContextDone: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the hidden loop did not stop with CloseOnContextDone")
	}
}

// TestInstrumentLoopsTick checks the periodic exit's counter: it drops by
// one per loop iteration, over all loops, and is reset after reaching zero,
// without the memory.grow changing the memory.
func TestInstrumentLoopsTick(t *testing.T) {
	// run(n) iterates n times, split over two nested loops of up to 10.
	in := wasmModule(
		sec(1, vec(functype([]byte{i32}, nil))), sec(3, vec(uleb(0))),
		sec(5, vec(cat(0x00, uleb(1)))),
		sec(7, vec(export("run", 0, 0))),
		sec(10, vec(bodyL([][]byte{locals(1, i32)},
			block(btEmpty, 0x03, btEmpty, // outer loop
				localGet(0), i32Eqz, brIf(1),
				i32c(0), localSet(1),
				block(btEmpty, 0x03, btEmpty, // inner loop
					localGet(0), i32Eqz, brIf(1),
					localGet(1), i32c(10), i32GeS, brIf(1),
					localGet(0), i32c(1), i32Sub, localSet(0),
					localGet(1), i32c(1), i32Add, localSet(1),
					br(0), opEnd),
				br(0), opEnd),
		))),
	)
	instrumented, err := InstrumentLoops(in)
	if err != nil {
		t.Fatal(err)
	}
	out, exports, err := ExportMutableGlobals(instrumented)
	if err != nil {
		t.Fatal(err)
	}
	var tickName string
	for _, e := range exports {
		if e.Index == 1 {
			tickName = e.Name
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	tick := mod.ExportedGlobal(tickName)
	if tick == nil || tick.Get() != YieldInterval {
		t.Fatalf("tick global %q = %v, want %d", tickName, tick, YieldInterval)
	}
	// Each inner iteration passes the inner loop header once; each outer
	// iteration the outer header once, plus the inner header on exit.
	const n = 3000
	if _, err := mod.ExportedFunction("run").Call(ctx, n); err != nil {
		t.Fatal(err)
	}
	outer := n/10 + 1        // 300 rounds of 10, then the n == 0 exit
	inner := n + (outer - 1) // n iterations, one exit check per round
	headers := outer + inner
	if got, want := tick.Get(), uint64(YieldInterval-headers%YieldInterval); got != want {
		t.Errorf("tick = %d after %d loop headers, want %d", got, headers, want)
	}
	if size := mod.Memory().Size(); size != 65536 {
		t.Errorf("memory size %d after the exits, want one page", size)
	}
}
