package runtime

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Functions deployed from one module share one copy of its bytes, held
// while any of them is loaded; the copy goes with the last.
func TestFunctionsShareModuleBytes(t *testing.T) {
	e, err := NewEngine(context.Background(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	mod := artifactWAT(t, "tiny-reactor")
	var fns []*Function
	for _, name := range []string{"a", "b", "c"} {
		// A fresh slice each time, as each deploy reads its blob.
		f, err := e.Load(context.Background(), FunctionSpec{Name: name, Module: append([]byte(nil), mod...), Mode: ModePooled})
		if err != nil {
			t.Fatal(err)
		}
		fns = append(fns, f)
	}
	if n := e.bytes.held(); n != 1 {
		t.Fatalf("%d module copies held for three functions of one module, want 1", n)
	}
	if unsafe.SliceData(fns[0].spec.Module) != unsafe.SliceData(fns[2].spec.Module) {
		t.Fatal("the functions hold different copies of their module")
	}
	// A new version of a function replaces its reference.
	if _, err := e.Load(context.Background(), FunctionSpec{Name: "a", Module: append([]byte(nil), mod...), Mode: ModePooled}); err != nil {
		t.Fatal(err)
	}
	if n := e.bytes.m[fns[0].hash].refs; n != 3 {
		t.Fatalf("%d references after a function was loaded again, want 3", n)
	}
	for i, name := range []string{"a", "b"} {
		if err := e.Unload(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if n := e.bytes.held(); n != 1 {
			t.Fatalf("after unloading %d of 3: %d copies held, want 1", i+1, n)
		}
	}
	if err := e.Unload(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if n := e.bytes.held(); n != 0 {
		t.Fatalf("after unloading every function: %d copies held, want 0", n)
	}
	// A module that fails its checks leaves nothing behind.
	if err := e.Check(context.Background(), FunctionSpec{Name: "bad", Module: []byte("\x00asm\x01\x00\x00\x00garbage")}); err == nil {
		t.Fatal("a garbage module passed its check")
	}
	if err := e.Check(context.Background(), FunctionSpec{Name: "ok", Module: mod, Mode: ModePooled}); err != nil {
		t.Fatal(err)
	}
	if n := e.bytes.held(); n != 0 {
		t.Fatalf("after two checks: %d copies held, want 0", n)
	}
}

// A sweep that frees a lot of guest memory (idle instances closed) hands
// the freed memory back to the kernel at once; one that frees little, or
// nothing, does not.
func TestSweepReturnsFreedMemory(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxGuestMemory = 1 << 30
	cfg.JanitorInterval = time.Hour // only the test sweeps
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	f, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: artifactWAT(t, "tiny-reactor"), Mode: ModePooled})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	held := e.mem.inUse()
	if held == 0 {
		t.Fatal("an instance holds no guest memory")
	}
	calls := 0
	oldAfter, oldFree := returnMemoryAfter, freeOSMemory
	defer func() { returnMemoryAfter, freeOSMemory = oldAfter, oldFree }()
	freeOSMemory = func() { calls++ }

	returnMemoryAfter = held + 1 // more than the sweep can free
	e.sweep(time.Now().Add(time.Hour))
	if calls != 0 || e.mem.inUse() != 0 {
		t.Fatalf("a sweep freeing %d bytes under the threshold: %d returns, %d bytes still held", held, calls, e.mem.inUse())
	}
	if _, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	returnMemoryAfter = held
	e.sweep(time.Now().Add(time.Hour))
	if calls != 1 {
		t.Fatalf("a sweep freeing %d bytes at the threshold: %d returns, want 1", held, calls)
	}
	e.sweep(time.Now().Add(2 * time.Hour))
	if calls != 1 {
		t.Fatalf("a sweep freeing nothing returned memory (%d returns)", calls)
	}
}
