package wasmbin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

const goGuest = `package main

var counter int32

//go:wasmexport bump
func bump(n int32) int32 {
	counter += n
	return counter
}

func main() {}
`

// buildGoGuest compiles goGuest as a wasip1 reactor and returns its bytes.
func buildGoGuest(t *testing.T) []byte {
	t.Helper()
	return buildGoSource(t, goGuest)
}

// buildGoSource compiles a one-file main package as a wasip1 reactor
// (-buildmode=c-shared) and returns its bytes.
func buildGoSource(tb testing.TB, src string) []byte {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	return goBuildWasip1(tb, dir, "main.go")
}

// goBuildWasip1 runs go build -buildmode=c-shared for GOOS=wasip1 in dir
// and returns the module's bytes.
func goBuildWasip1(tb testing.TB, dir, pkg string) []byte {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Skip("go command not in PATH")
	}
	out := filepath.Join(tb.TempDir(), "guest.wasm")
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, msg)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return wasm
}

func TestGoWasip1Guest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test compiles a Go guest with the Go toolchain (seconds); make test runs it")
	}
	wasm := buildGoGuest(t)
	out, exports, err := ExportMutableGlobals(wasm)
	if err != nil {
		t.Fatalf("ExportMutableGlobals: %v", err)
	}
	if len(exports) == 0 {
		t.Fatal("no mutable globals found in a Go module")
	}
	checkReparse(t, wasm, out, exports)

	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("wazero rejected the output: %v", err)
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer mod.Close(ctx)

	bump := mod.ExportedFunction("bump")
	if res, err := bump.Call(ctx, 2); err != nil || int32(res[0]) != 2 {
		t.Fatalf("bump(2) = %v, %v", res, err)
	}
	snapshot := make([]uint64, len(exports))
	for i, e := range exports {
		g, ok := mod.ExportedGlobal(e.Name).(api.MutableGlobal)
		if !ok {
			t.Fatalf("%s (global %d) is not an exported mutable global", e.Name, e.Index)
		}
		snapshot[i] = g.Get()
		t.Logf("global %d %s %s = %#x", e.Index, e.Name, api.ValueTypeName(g.Type()), snapshot[i])
	}
	// The Go linker makes global 0 the stack pointer; it is an i32 that
	// points into linear memory once the runtime is initialized.
	if exports[0].Index != 0 {
		t.Fatalf("first exported global is %d, want the stack pointer (0)", exports[0].Index)
	}
	sp := mod.ExportedGlobal(exports[0].Name)
	if sp.Type() != api.ValueTypeI32 || sp.Get() == 0 || sp.Get() >= uint64(mod.Memory().Size()) {
		t.Errorf("stack pointer = %s %#x, want a nonzero address below %#x", api.ValueTypeName(sp.Type()), sp.Get(), mod.Memory().Size())
	}
	// Writing the snapshot back must leave the guest working.
	for i, e := range exports {
		mod.ExportedGlobal(e.Name).(api.MutableGlobal).Set(snapshot[i])
	}
	if res, err := bump.Call(ctx, 3); err != nil || int32(res[0]) != 5 {
		t.Fatalf("bump(3) = %v, %v", res, err)
	}
}
