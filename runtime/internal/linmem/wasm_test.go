package linmem

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const wasmPage = 1 << 16

// modSpec describes a hand-encoded test module. It defines a memory
// (min, max pages; max < 0 means none), exported as "memory", and exports
//
//	store(addr, val i32)   i32.store8
//	load(addr i32) i32     i32.load8_u
//	grow(pages i32) i32    memory.grow
//	size() i32             memory.size
//
// data is placed at dataAt by an active data segment; trapStart adds a
// start function that executes unreachable.
type modSpec struct {
	min, max  int
	data      []byte
	dataAt    int
	trapStart bool
}

func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func section(b []byte, id byte, body []byte) []byte {
	return append(uleb(append(b, id), uint64(len(body))), body...)
}

func name(b []byte, s string) []byte { return append(uleb(b, uint64(len(s))), s...) }

func (s modSpec) encode() []byte {
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = section(b, 1, []byte{4,
		0x60, 2, 0x7f, 0x7f, 0, // 0: (i32, i32) -> ()
		0x60, 1, 0x7f, 1, 0x7f, // 1: (i32) -> i32
		0x60, 0, 1, 0x7f, // 2: () -> i32
		0x60, 0, 0, // 3: () -> ()
	})
	funcs := []byte{0, 1, 1, 2}
	bodies := [][]byte{
		{0x20, 0, 0x20, 1, 0x3a, 0, 0, 0x0b}, // local.get 0; local.get 1; i32.store8; end
		{0x20, 0, 0x2d, 0, 0, 0x0b},          // local.get 0; i32.load8_u; end
		{0x20, 0, 0x40, 0, 0x0b},             // local.get 0; memory.grow; end
		{0x3f, 0, 0x0b},                      // memory.size; end
	}
	if s.trapStart {
		funcs = append(funcs, 3)
		bodies = append(bodies, []byte{0x00, 0x0b}) // unreachable; end
	}
	b = section(b, 3, append(uleb(nil, uint64(len(funcs))), funcs...))
	mem := []byte{1, 0}
	if s.max >= 0 {
		mem[1] = 1
	}
	mem = uleb(mem, uint64(s.min))
	if s.max >= 0 {
		mem = uleb(mem, uint64(s.max))
	}
	b = section(b, 5, mem)
	exp := []byte{5}
	for i, n := range []string{"store", "load", "grow", "size"} {
		exp = append(name(exp, n), 0, byte(i))
	}
	exp = append(name(exp, "memory"), 2, 0)
	b = section(b, 7, exp)
	if s.trapStart {
		b = section(b, 8, []byte{4})
	}
	code := uleb(nil, uint64(len(bodies)))
	for _, body := range bodies {
		code = append(uleb(code, uint64(len(body)+1)), 0) // no locals
		code = append(code, body...)
	}
	b = section(b, 10, code)
	if len(s.data) > 0 {
		d := sleb([]byte{1, 0, 0x41}, int64(s.dataAt))
		d = uleb(append(d, 0x0b), uint64(len(s.data)))
		b = section(b, 11, append(d, s.data...))
	}
	return b
}

// guest wraps an instantiated test module.
type guest struct {
	t   testing.TB
	ctx context.Context
	mod api.Module
}

func (g guest) call(fn string, args ...uint64) uint64 {
	g.t.Helper()
	res, err := g.mod.ExportedFunction(fn).Call(g.ctx, args...)
	if err != nil {
		g.t.Fatalf("%s%v: %v", fn, args, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

func (g guest) store(addr uint32, v byte) { g.call("store", uint64(addr), uint64(v)) }
func (g guest) load(addr uint32) byte     { return byte(g.call("load", uint64(addr))) }
func (g guest) grow(pages uint32) int32   { return int32(g.call("grow", uint64(pages))) }
func (g guest) size() uint32              { return uint32(g.call("size")) }

// newRuntime returns a runtime (the default engine: the compiler on
// amd64/arm64) closed when the test ends.
func newRuntime(t testing.TB) (context.Context, wazero.Runtime) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = r.Close(ctx) })
	return ctx, r
}

func compile(t testing.TB, ctx context.Context, r wazero.Runtime, s modSpec) wazero.CompiledModule {
	t.Helper()
	c, err := r.CompileModule(ctx, s.encode())
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

// anonymous instances, so the same compiled module can be instantiated
// many times in one runtime.
var anon = wazero.NewModuleConfig().WithName("")
