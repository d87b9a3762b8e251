package wasmbin

import (
	"bytes"
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

func measure(t *testing.T, name string, w []byte) {
	c := &limitChecker{wasm: w, dataCount: -1, slotLimit: math.MaxUint64}
	if err := c.check(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	st := time.Now()
	cm, err := r.CompileModule(ctx, w)
	d := time.Since(st)
	runtime.ReadMemStats(&m1)
	if err == nil {
		cm.Close(ctx)
	}
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("%-28s %7d bytes slots=%8d (%.1f/B) alloc=%6.1f MB (%.0f B/slot, %.0f B/byte) peakHeap~%d MB %v err=%v", name, len(w), c.slots, float64(c.slots)/float64(len(w)), float64(alloc)/1e6, float64(alloc)/float64(c.slots+1), float64(alloc)/float64(len(w)), m1.HeapSys>>20, d, err)
}

func TestZZHostile(t *testing.T) {
	many := func(n int, b []byte) []byte { return bytes.Repeat(b, n) }
	i32s := func(n int) []byte { return bytes.Repeat([]byte{i32}, n) }
	const N = 20000
	// calls to a function returning 1000 i32s.
	calls := wasmModule(
		sec(1, vec(functype(nil, i32s(1000)), functype(nil, nil))),
		sec(3, vec([]byte{0}, []byte{1})),
		sec(10, vec(
			body(0x00, 0x0b-0x0b+0x00), // placeholder replaced below
			body(many(N, []byte{0x10, 0x00}), 0x00),
		)),
	)
	_ = calls
	// f0: [] -> [1000 i32] body: unreachable
	f0 := body(0x00)
	f1 := body(many(N, []byte{0x10, 0x00}), 0x00)
	measure(t, "calls R=1000", wasmModule(sec(1, vec(functype(nil, i32s(1000)), functype(nil, nil))), sec(3, vec([]byte{0}, []byte{1})), sec(10, vec(f0, f1))))
	// blocks with type [] -> [1000]
	f1 = body(many(N, []byte{0x02, 0x00, 0x00, 0x0b}), 0x00)
	measure(t, "blocks R=1000", wasmModule(sec(1, vec(functype(nil, i32s(1000)), functype(nil, nil))), sec(3, vec([]byte{1})), sec(10, vec(f1))))
	// br_if to a label with 1000 results: block $t(result 1000) (call f0) br_if 0 x N ... 
	f1 = body(0x02, 0x00, 0x10, 0x00, many(N, []byte{0x41, 0x00, 0x0d, 0x00}), 0x0b, 0x00)
	measure(t, "br_if R=1000", wasmModule(sec(1, vec(functype(nil, i32s(1000)), functype(nil, nil))), sec(3, vec([]byte{0}, []byte{1})), sec(10, vec(f0, f1))))
	// br_table to a label with 1000 results
	f1 = body(0x02, 0x00, 0x10, 0x00, 0x41, 0x00, 0x0e, uleb(N), many(N, []byte{0x00}), 0x00, 0x0b, 0x00)
	measure(t, "br_table R=1000", wasmModule(sec(1, vec(functype(nil, i32s(1000)), functype(nil, nil))), sec(3, vec([]byte{0}, []byte{1})), sec(10, vec(f0, f1))))
	// many functions with 50000 locals each
	var bodies [][]byte
	var fs [][]byte
	for i := 0; i < 200; i++ {
		bodies = append(bodies, cat(uleb(7), 1, uleb(50000), i32, 0x0b))
		fs = append(fs, []byte{0})
	}
	measure(t, "200 fns x 50000 locals", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec(fs...)), sec(10, vec(bodies...))))
	// many functions with 1000 params
	bodies, fs = nil, nil
	for i := 0; i < 2000; i++ {
		bodies = append(bodies, body())
		fs = append(fs, []byte{0})
	}
	measure(t, "2000 fns x 1000 params", wasmModule(sec(1, vec(functype(i32s(1000), nil))), sec(3, vec(fs...)), sec(10, vec(bodies...))))
	// plain i32.const pushes
	f1 = body(many(N, []byte{0x41, 0x00}), 0x00)
	measure(t, "i32.const x N", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec([]byte{0})), sec(10, vec(f1))))
}
