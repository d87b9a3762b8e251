package wasmbin

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
)

// A generator of valid function bodies for a differential test of the
// instruction decoder. Driven by fuzz bytes, it emits instructions of every
// kind InstrumentLoops decodes, with immediates in random (often
// non-minimal) encodings that wazero accepts, nested in blocks, loops, ifs
// and try_tables. It writes the body twice: as is, and with the stop check
// after every loop's block type, the entry check when the body makes a
// call, and the bulk charge before every memory.init, memory.copy,
// memory.fill, table.init, table.copy and table.fill with the scratch
// local it uses declared after the body's locals, which is exactly what
// InstrumentLoops must produce. Typing is
// made easy with unreachable: every generated
// instruction sits in its own
//
//	block unreachable <instruction> br 0 end
//
// where the polymorphic stack satisfies any operands and br 0 discards any
// results. wazero must compile both versions.

// genStop is the stop global's index in genModule: after 4 globals.
const genStop = 4

// genDecls are the local declarations of the generated body, and
// genScratch the index of the scratch local InstrumentLoops declares after
// them when the body has a bulk instruction (function 0 has no
// parameters).
var genDecls = [][]byte{locals(3, i32), locals(1, v128), locals(1, 0x63, 0x00)}

const genScratch = 5

type gen struct {
	data        []byte
	pos         int
	plain, want []byte
	budget      int  // instructions left to emit
	calls       bool // the body makes a call: it gets the entry check
	bulk        bool // the body has a bulk instruction: it gets the scratch local
}

// next returns the next fuzz byte, or 0 once the input is used up.
func (g *gen) next() byte {
	if g.pos >= len(g.data) {
		return 0
	}
	g.pos++
	return g.data[g.pos-1]
}

func (g *gen) pick(n int) int { return int(g.next()) % n }

func (g *gen) u32v() uint32 {
	return uint32(g.next()) | uint32(g.next())<<8 | uint32(g.next())<<16 | uint32(g.next())<<24
}

func (g *gen) emit(parts ...any) {
	b := cat(parts...)
	g.plain = append(g.plain, b...)
	g.want = append(g.want, b...)
}

// u32 emits v as unsigned LEB128 padded to a random length of at most 5.
func (g *gen) u32(v uint32) {
	b := uleb(uint64(v))
	for pad := g.pick(4); pad > 0 && len(b) < 5; pad-- {
		b[len(b)-1] |= 0x80
		b = append(b, 0x00)
	}
	g.emit(b)
}

// s33 emits v as signed LEB128 padded to a random length of at most 5.
func (g *gen) s33(v int64) {
	b := sleb(v)
	ext := byte(0x00)
	if v < 0 {
		ext = 0x7f
	}
	for pad := g.pick(4); pad > 0 && len(b) < 5; pad-- {
		b[len(b)-1] |= 0x80
		b = append(b, ext)
	}
	g.emit(b)
}

// s64 emits a random i64 as signed LEB128, sometimes padded.
func (g *gen) s64() {
	v := int64(g.u32v())<<32 | int64(g.u32v())
	v >>= g.pick(64)
	b := sleb(v)
	ext := byte(0x00)
	if v < 0 {
		ext = 0x7f
	}
	for pad := g.pick(3); pad > 0 && len(b) < 10; pad-- {
		b[len(b)-1] |= 0x80
		b = append(b, ext)
	}
	g.emit(b)
}

func (g *gen) raw(n int) {
	for i := 0; i < n; i++ {
		g.emit(g.next())
	}
}

// memarg emits an alignment of at most maxAlign (exactly maxAlign when
// exact) and a random offset.
func (g *gen) memarg(maxAlign int, exact bool) {
	align := maxAlign
	if !exact {
		align = g.pick(maxAlign + 1)
	}
	g.u32(uint32(align))
	g.u32(g.u32v() >> g.pick(32))
}

// blockType emits a block type of genModule: empty, a value type, a type
// index (0: [] -> [], 1: [i32] -> [i32]) or a reference type.
func (g *gen) blockType() {
	switch g.pick(10) {
	case 0, 1:
		g.s33(0x40 - 0x80)
	case 2:
		g.s33(0x7f - 0x80)
	case 3:
		g.s33(0x7b - 0x80)
	case 4:
		g.s33(0x70 - 0x80)
	case 5:
		g.s33(0x69 - 0x80)
	case 6, 7:
		g.s33(int64(g.pick(2)))
	case 8:
		g.s33(0x63 - 0x80)
		g.s33(0x70 - 0x80)
	case 9:
		g.s33(0x64 - 0x80)
		g.s33(0)
	}
}

// units emits up to three instructions, each in its own block.
func (g *gen) units(depth int) {
	for n := g.pick(4); n > 0 && g.budget > 0; n-- {
		g.emit(0x02, 0x40, 0x00)
		g.instr(depth + 1)
		g.emit(0x0c)
		g.u32(0)
		g.emit(opEnd)
	}
}

// nested emits the body of a block-like instruction: unreachable, so the
// block's results type-check, then more units.
func (g *gen) nested(depth int) {
	g.emit(0x00)
	if depth < 6 {
		g.units(depth)
	}
	g.emit(opEnd)
}

var (
	genNoImm = []byte{0x00, 0x01, 0x0a, 0x0f, 0x1a, 0x1b, 0xd1, 0xd4}
	// natural alignments (log2) of the loads and stores 0x28..0x3e.
	genMemAlign = []int{2, 3, 2, 3, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 3, 2, 3, 0, 1, 0, 1, 2}
	genValTypes = []byte{i32, i64, f32, f64, v128, fref, xref}
)

// simdAlign returns the natural alignment of a SIMD memory instruction.
func simdAlign(sub uint32) int {
	switch sub {
	case 0, 11:
		return 4
	case 7, 84, 88:
		return 0
	case 8, 85, 89:
		return 1
	case 9, 92, 86, 90:
		return 2
	}
	return 3 // 1-6, 10, 93, 87, 91
}

// atomicAlign returns the natural alignment of an atomic memory instruction.
func atomicAlign(sub byte) int {
	switch {
	case sub <= 1:
		return 2
	case sub == 2:
		return 3
	case sub < 0x1e:
		return []int{2, 3, 0, 1, 0, 1, 2, 2, 3, 0, 1, 0, 1, 2}[sub-0x10]
	}
	return []int{2, 3, 0, 1, 0, 1, 2}[(sub-0x1e)%7]
}

func (g *gen) instr(depth int) {
	g.budget--
	switch g.pick(32) {
	case 0: // loop
		g.emit(0x03)
		g.blockType()
		g.want = append(g.want, (&mb{stop: true, stopIdx: genStop}).check()...)
		g.nested(depth)
	case 1: // block
		g.emit(0x02)
		g.blockType()
		g.nested(depth)
	case 2: // if, maybe with else
		g.emit(0x04)
		if g.pick(2) == 0 {
			// Without else, the block type must have results = params:
			// empty or type 1.
			if g.pick(2) == 0 {
				g.s33(0x40 - 0x80)
			} else {
				g.s33(1)
			}
			g.nested(depth)
			return
		}
		g.blockType()
		g.emit(0x00)
		g.units(depth)
		g.emit(0x05)
		g.nested(depth)
	case 3: // try_table with catch tag 0 and catch_all clauses to label 0
		g.emit(0x1f)
		g.blockType()
		n := g.pick(3)
		g.u32(uint32(n))
		for i := 0; i < n; i++ {
			if g.pick(2) == 0 {
				g.emit(0x00)
				g.u32(0)
			} else {
				g.emit(0x02)
			}
			g.u32(0)
		}
		g.nested(depth)
	case 4:
		g.emit(genNoImm[g.pick(len(genNoImm))])
	case 5, 6: // numeric
		g.emit(0x45 + g.pick(0xc5-0x45))
	case 7: // locals
		g.emit(0x20 + g.pick(3))
		g.u32(uint32(g.pick(5)))
	case 8: // globals: 0 and 2 are mutable
		if g.pick(2) == 0 {
			g.emit(0x23)
			g.u32(uint32(g.pick(4)))
		} else {
			g.emit(0x24)
			g.u32(uint32(2 * g.pick(2)))
		}
	case 9: // br, br_if, br_table, br_on_null to label 0
		switch g.pick(4) {
		case 0, 1:
			g.emit(0x0c + g.pick(2))
			g.u32(0)
		case 2:
			n := g.pick(4)
			g.emit(0x0e)
			g.u32(uint32(n))
			for i := 0; i <= n; i++ {
				g.u32(0)
			}
		case 3:
			g.emit(0xd5)
			g.u32(0)
		}
	case 10: // calls; the tail calls need type 0, the caller's
		g.calls = true
		switch g.pick(6) {
		case 0: // call
			g.emit(0x10)
			g.u32(uint32(g.pick(2)))
		case 1: // return_call
			g.emit(0x12)
			g.u32(uint32(g.pick(2)))
		case 2: // call_indirect
			g.emit(0x11)
			g.u32(uint32(g.pick(2)))
			g.u32(0)
		case 3: // return_call_indirect
			g.emit(0x13)
			g.u32(0)
			g.u32(0)
		case 4: // call_ref
			g.emit(0x14)
			g.u32(uint32(g.pick(2)))
		case 5: // return_call_ref
			g.emit(0x15)
			g.u32(0)
		}
	case 11: // select t
		g.emit(0x1c, 0x01, genValTypes[g.pick(len(genValTypes))])
	case 12: // table.get, table.set
		g.emit(0x25 + g.pick(2))
		g.u32(uint32(g.pick(2)))
	case 13, 14: // loads and stores
		op := g.pick(len(genMemAlign))
		g.emit(0x28 + op)
		g.memarg(genMemAlign[op], false)
	case 15: // memory.size, memory.grow
		g.emit(0x3f+g.pick(2), 0x00)
	case 16:
		g.emit(0x41)
		g.s33(int64(int32(g.u32v())) >> g.pick(32))
	case 17:
		g.emit(0x42)
		g.s64()
	case 18:
		g.emit(0x43)
		g.raw(4)
	case 19:
		g.emit(0x44)
		g.raw(8)
	case 20: // ref.null; wazero reads abstract heap types as one byte
		g.emit(0xd0)
		switch g.pick(4) {
		case 0:
			g.emit(0x70)
		case 1:
			g.emit(0x6f)
		case 2:
			g.emit(0x69)
		case 3:
			g.u32(0)
		}
	case 21: // ref.func
		g.emit(0xd2)
		g.u32(uint32(g.pick(2)))
	case 22: // throw tag 0
		g.emit(0x08)
		g.u32(0)
	case 23, 24: // 0xfc
		sub := uint32(g.pick(18))
		switch sub {
		case 8, 10, 11: // memory.init, memory.copy, memory.fill
			g.want = append(g.want, (&mb{stop: true, stopIdx: genStop}).bulk(genScratch)...)
			g.bulk = true
		case 12, 14, 17: // table.init, table.copy, table.fill
			g.want = append(g.want, (&mb{stop: true, stopIdx: genStop}).tableBulk(genScratch)...)
			g.bulk = true
		}
		g.emit(0xfc)
		g.u32(sub)
		switch sub {
		case 8:
			g.u32(0)
			g.emit(0x00)
		case 9:
			g.u32(0)
		case 10:
			g.emit(0x00, 0x00)
		case 11:
			g.emit(0x00)
		case 12:
			g.u32(0)
			g.u32(0)
		case 13:
			g.u32(0)
		case 14:
			t := uint32(g.pick(2))
			g.u32(t)
			g.u32(t)
		case 15, 16, 17:
			g.u32(uint32(g.pick(2)))
		}
	case 25, 26, 27, 28: // 0xfd
		var sub uint32
		for {
			sub = uint32(g.next())
			if !bytes.Contains(simdHoleBytes(), []byte{byte(sub)}) {
				break
			}
		}
		g.emit(0xfd, uleb(uint64(sub)))
		switch {
		case sub <= 11, sub == 92, sub == 93:
			g.memarg(simdAlign(sub), false)
		case sub == 12:
			g.raw(16)
		case sub == 13:
			for i := 0; i < 16; i++ {
				g.emit(g.pick(32))
			}
		case 21 <= sub && sub <= 34:
			g.emit(g.pick([]int{16, 16, 16, 8, 8, 8, 4, 4, 2, 2, 4, 4, 2, 2}[sub-21]))
		case 84 <= sub && sub <= 91:
			g.memarg(simdAlign(sub), false)
			g.emit(g.pick(16 >> ((sub - 84) % 4)))
		}
	case 29, 30: // 0xfe
		if g.pick(8) == 0 {
			g.emit(0xfe, 0x03, 0x00)
			return
		}
		sub := byte(0x10 + g.pick(0x4f-0x10))
		if g.pick(4) == 0 {
			sub = byte(g.pick(3))
		}
		g.emit(0xfe, sub)
		g.memarg(atomicAlign(sub), true)
	case 31: // sign extension
		g.emit(0xc0 + g.pick(5))
	}
}

func simdHoleBytes() []byte {
	b := make([]byte, len(simdHoles))
	for i, h := range simdHoles {
		b[i] = byte(h)
	}
	return b
}

// genModule wraps a generated body of function 0 into a module with
// everything the generator's immediates refer to.
func genModule(b *mb, code []byte) []byte {
	tVoid := functype(nil, nil)
	return wasmModule(
		sec(1, vec(tVoid, tI32I32)),
		sec(3, vec(uleb(0), uleb(0))),
		sec(4, vec(cat(fref, 0x00, uleb(1)), cat(xref, 0x00, uleb(1)))),
		sec(5, vec(cat(0x03, uleb(1), uleb(1)))), // shared memory
		sec(13, vec(cat(0x00, uleb(0)))),
		b.globals(
			global(i32, mutable, i32c(0)), global(i64, constant, i64c(1)),
			global(v128, mutable, 0xfd, 0x0c, zeros16), global(fref, mutable, 0xd0, fref),
		),
		b.exports(export("f0", 0, 0), export("f1", 0, 1)),
		sec(9, vec(cat(0x01, 0x00, vec(uleb(0), uleb(1))))),
		sec(12, uleb(1)),
		sec(10, vec(
			cat(uleb(uint64(len(code))), code),
			body(),
		)),
		sec(11, vec(cat(0x01, str("abc")))),
	)
}

// generate runs the generator on data and returns the module and the
// expected instrumented module.
func generate(data []byte) (plain, want []byte) {
	g := &gen{data: data, budget: 200}
	g.emit(vec(genDecls...))
	entry := len(g.want)
	g.emit(0x00)
	g.units(0)
	for g.pos < len(g.data) && g.budget > 0 {
		g.units(0)
	}
	g.emit(opEnd)
	if g.calls {
		g.want = slices.Insert(g.want, entry, (&mb{stop: true, stopIdx: genStop}).entry()...)
	}
	if g.bulk {
		g.want = slices.Replace(g.want, 0, entry, vec((&mb{stop: true}).scratch(genDecls...)...)...)
	}
	return genModule(&mb{}, g.plain), genModule(&mb{stop: true, stopIdx: genStop}, g.want)
}

// checkGenerated checks InstrumentLoops against the generator's oracle and
// wazero.
func checkGenerated(t *testing.T, r wazero.Runtime, data []byte) {
	t.Helper()
	ctx := context.Background()
	plain, want := generate(data)
	cm, err := r.CompileModule(ctx, plain)
	if err != nil {
		t.Fatalf("generator bug: wazero rejects the generated module: %v\n%x", err, plain)
	}
	cm.Close(ctx)
	out, err := InstrumentLoops(plain)
	if err != nil {
		t.Fatalf("InstrumentLoops: %v\n%x", err, plain)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("output\n%x\nwant\n%x", out, want)
	}
	cm, err = r.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("wazero rejects the output: %v", err)
	}
	cm.Close(ctx)
}

func genRuntime() wazero.Runtime {
	return wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
}

func TestInstrumentLoopsGenerated(t *testing.T) {
	r := genRuntime()
	defer r.Close(context.Background())
	rng := rand.New(rand.NewPCG(1, 2))
	n := 500
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		data := make([]byte, 64+rng.IntN(1024))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		checkGenerated(t, r, data)
	}
}

func FuzzInstrumentLoopsGenerated(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 16))
	r := genRuntime()
	f.Cleanup(func() { r.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, data []byte) {
		checkGenerated(t, r, data)
	})
}
