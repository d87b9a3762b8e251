package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// goLoopGuest is a Go reactor with an infinite loop (spin), a function doing
// ordinary work (work: allocates, sorts, formats and hashes) and a tight
// loop nest (sum). work's logic is repeated in workNative below.
const goLoopGuest = `package main

import (
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
)

var sink int

//go:wasmexport spin
func spin() {
	for {
		sink++
	}
}

//go:wasmexport work
func work(n int32) int64 {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = (i * 7919) % int(n)
	}
	slices.Sort(xs)
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	h := fnv.New64a()
	h.Write([]byte(strings.Join(parts, ",")))
	return int64(h.Sum64() >> 1)
}

//go:wasmexport sum
func sum(n int32) int64 {
	var s int64
	for i := int32(0); i < n; i++ {
		for j := int32(0); j < 100; j++ {
			s += int64(i ^ j)
		}
	}
	return s
}

func main() {}
`

// workNative is goLoopGuest's work compiled for the host.
func workNative(n int32) int64 {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = (i * 7919) % int(n)
	}
	slices.Sort(xs)
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	h := fnv.New64a()
	h.Write([]byte(strings.Join(parts, ",")))
	return int64(h.Sum64() >> 1)
}

func sumNative(n int32) int64 {
	var s int64
	for i := int32(0); i < n; i++ {
		for j := int32(0); j < 100; j++ {
			s += int64(i ^ j)
		}
	}
	return s
}

// instantiateGo instantiates a Go reactor with WASI and runs _initialize.
func instantiateGo(tb testing.TB, ctx context.Context, r wazero.Runtime, wasm []byte, name string) api.Module {
	tb.Helper()
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatalf("compile %s: %v", name, err)
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(name).WithStartFunctions("_initialize"))
	if err != nil {
		tb.Fatalf("instantiate %s: %v", name, err)
	}
	return mod
}

func TestInstrumentLoopsGoGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test compiles a Go guest with the Go toolchain (seconds); make test runs it")
	}
	wasm := buildGoSource(t, goLoopGuest)
	instrumented, err := InstrumentLoops(wasm)
	if err != nil {
		t.Fatalf("InstrumentLoops: %v", err)
	}
	// The engine's order: InstrumentLoops, then ExportMutableGlobals.
	out, exports, err := ExportMutableGlobals(instrumented)
	if err != nil {
		t.Fatalf("ExportMutableGlobals: %v", err)
	}
	mi, _ := parse(wasm)
	mo, _ := parse(out)
	if mo.totalGlobals != mi.totalGlobals+2 {
		t.Errorf("global count went from %d to %d, want 2 more (stop and tick)", mi.totalGlobals, mo.totalGlobals)
	}
	i := slices.IndexFunc(exports, func(e GlobalExport) bool { return e.Name == StopGlobalName })
	if i < 0 || exports[i].Index != mi.totalGlobals {
		t.Fatalf("mutable globals %v do not list %s as global %d", exports, StopGlobalName, mi.totalGlobals)
	}
	if _, others, _ := ExportMutableGlobals(wasm); len(others)+2 != len(exports) {
		t.Errorf("the original has %d mutable globals, the instrumented module %d; want two more", len(others), len(exports))
	}
	t.Logf("%d bytes -> %d bytes", len(wasm), len(instrumented))

	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod := instantiateGo(t, ctx, r, out, "guest")
	for _, n := range []int32{1, 10, 1000} {
		res, err := mod.ExportedFunction("work").Call(ctx, uint64(n))
		if err != nil || int64(res[0]) != workNative(n) {
			t.Fatalf("work(%d) = %v, %v; want %d", n, res, err, workNative(n))
		}
	}
	if res, err := mod.ExportedFunction("sum").Call(ctx, 50); err != nil || int64(res[0]) != sumNative(50) {
		t.Fatalf("sum(50) = %v, %v; want %d", res, err, sumNative(50))
	}

	// Snapshotting through ExportMutableGlobals's list covers the stop global.
	stop := mod.ExportedGlobal(StopGlobalName).(api.MutableGlobal)
	if stop.Get() != 0 {
		t.Fatalf("stop global = %d before the stop", stop.Get())
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		done <- err
	}()
	const running = 100 * time.Millisecond
	select {
	case err := <-done:
		t.Fatalf("spin returned by itself: %v", err)
	case <-time.After(running):
	}
	stop.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin returned %v, want an unreachable trap", err)
		}
		if elapsed := time.Since(start); elapsed < running {
			t.Errorf("spin stopped after %v, before the stop global was set", elapsed)
		}
		t.Logf("spin stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("spin still running 10s after the stop global was set")
	}
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Skipf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == "/dev/null" {
		tb.Skip("not inside a module")
	}
	return filepath.Dir(gomod)
}

func TestInstrumentLoopsHelloExample(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test compiles a Go guest with the Go toolchain (seconds); make test runs it")
	}
	wasm := goBuildWasip1(t, moduleRoot(t), "./examples/hello")
	instrumented, err := InstrumentLoops(wasm)
	if errors.Is(err, ErrUnsupportedInstruction) {
		t.Fatalf("the hello example needs the fallback: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, exports, err := ExportMutableGlobals(instrumented)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(exports, func(e GlobalExport) bool { return e.Name == StopGlobalName }) {
		t.Fatalf("%s missing from %v", StopGlobalName, exports)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	// The SDK imports the node's log function (a handler panic is logged
	// through it); this test only needs it to exist.
	if _, err := r.NewHostModuleBuilder("gojinn_log_v1").NewFunctionBuilder().
		WithFunc(func(_ context.Context, _ int32, _, _, _, _ uint32) int32 { return 0 }).
		Export("log").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	// A garbage request makes the guest decode, fail, format an error and
	// encode a response, running plenty of instrumented loops.
	mod := instantiateGo(t, ctx, r, out, "hello")
	res, err := mod.ExportedFunction("gojinn_v1_reserve").Call(ctx, 16)
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	mod.Memory().Write(uint32(res[0]), bytes.Repeat([]byte{0xff}, 16))
	res, err = mod.ExportedFunction("gojinn_v1_handle").Call(ctx, 16)
	if err != nil {
		t.Fatalf("handle: %v", err)
	}
	resp, ok := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok || !bytes.Contains(resp, []byte("decode request")) {
		t.Fatalf("response %#x: %q, want a decoding error", res[0], resp)
	}
	t.Logf("%d bytes -> %d bytes; response %q", len(wasm), len(out), resp)
}

// BenchmarkGoGuestLoops calls loop-heavy functions of a Go guest with
// wazero's own termination checks (CloseOnContextDone on the original
// module), with the stop-global instrumentation (CloseOnContextDone off),
// and with no termination checks at all as the baseline.
func BenchmarkGoGuestLoops(b *testing.B) {
	wasm := buildGoSource(b, goLoopGuest)
	instrumented, err := InstrumentLoops(wasm)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []struct {
		name  string
		close bool
		wasm  []byte
	}{
		{"CloseOnContextDone", true, wasm},
		{"instrumented", false, instrumented},
		{"unchecked", false, wasm},
	} {
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(v.close))
		wasi_snapshot_preview1.MustInstantiate(ctx, r)
		mod := instantiateGo(b, ctx, r, v.wasm, "guest")
		for _, f := range []struct {
			name string
			arg  uint64
		}{{"work", 100}, {"sum", 100}} {
			fn := mod.ExportedFunction(f.name)
			b.Run(fmt.Sprintf("%s(%d)/%s", f.name, f.arg, v.name), func(b *testing.B) {
				for b.Loop() {
					if _, err := fn.Call(ctx, f.arg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		r.Close(ctx)
	}
}
