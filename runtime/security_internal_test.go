package runtime

// Internal tests named by docs/security-model.md: limits whose values or
// mechanisms are not observable from outside the package.

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The per-function limits take the defaults the security model states
// when a spec leaves them zero, and so does the engine's module size cap.
func TestLimitsDefaults(t *testing.T) {
	spec := FunctionSpec{Name: "f"}
	if err := spec.normalize(); err != nil {
		t.Fatal(err)
	}
	l := spec.Limits
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"MemoryBytes", int64(l.MemoryBytes), 128 << 20},
		{"Timeout", int64(l.Timeout), int64(10 * time.Second)},
		{"MaxRequestBody", l.MaxRequestBody, 10 << 20},
		{"MaxResponseBody", l.MaxResponseBody, 10 << 20},
		{"MaxStdout", l.MaxStdout, 64 << 10},
		{"MaxStderr", l.MaxStderr, 64 << 10},
		{"MaxInstances", int64(l.MaxInstances), int64(max(4, 2*goruntime.GOMAXPROCS(0)))},
		{"QueueTimeout", int64(l.QueueTimeout), int64(time.Second)},
		{"Config.MaxModuleBytes", int64(DefaultConfig().MaxModuleBytes), 64 << 20},
		{"Config.MaxConcurrentCompiles", int64(DefaultConfig().MaxConcurrentCompiles), 1},
	} {
		if c.got != c.want {
			t.Errorf("default %s = %d, want %d", c.what, c.got, c.want)
		}
	}
	// A zero CPU budget means the timeout bounds CPU time as well.
	if l.CPUTime != 0 {
		t.Errorf("default CPUTime = %v, want 0 (bounded by the timeout)", l.CPUTime)
	}
}

// Compilations are bounded by MaxConcurrentCompiles: while every slot is
// taken a Load waits (and gives up with its context), and it proceeds once
// a slot is free.
func TestCompileSemaphore(t *testing.T) {
	tiny := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	for _, n := range []int{1, 3} {
		cfg := DefaultConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.MaxConcurrentCompiles = n
		e, err := NewEngine(context.Background(), cfg) // no disk cache: Load compiles
		if err != nil {
			t.Fatal(err)
		}
		if got := cap(e.mods.compiling); got != n {
			t.Errorf("MaxConcurrentCompiles %d: %d compile slots", n, got)
		}
		for range n { // every slot busy, as if n compilations were running
			e.mods.compiling <- struct{}{}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err = e.Load(ctx, FunctionSpec{Name: "f", Module: tiny, Mode: ModePooled})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting to compile") {
			t.Errorf("MaxConcurrentCompiles %d, all slots busy: Load gave %v, want it to wait for a slot until its context ended", n, err)
		}
		<-e.mods.compiling // one compilation finishes
		if _, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: tiny, Mode: ModePooled}); err != nil {
			t.Errorf("MaxConcurrentCompiles %d, a slot free: %v", n, err)
		}
		for range n - 1 {
			<-e.mods.compiling
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A module whose compiled code is in the disk caches loads without a
// compile slot: a function whose code was dropped while idle comes back
// at once while another module's long compile holds every slot (such a
// compile left every idle function failing "waiting to compile" for as
// long as it ran). A module that needs the compiler still waits.
func TestDiskCachedModuleSkipsCompileSlot(t *testing.T) {
	tiny := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	other := runtimetest.WAT(t, "runtime/testdata/wat/idle-counter.wat")
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = t.TempDir()
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	if _, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: tiny, Mode: ModePooled}); err != nil {
		t.Fatal(err)
	}
	if err := e.Unload(context.Background(), "f"); err != nil { // its compiled code goes with it
		t.Fatal(err)
	}
	e.mods.compiling <- struct{}{} // a long compile holds the only slot
	defer func() { <-e.mods.compiling }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := e.Load(ctx, FunctionSpec{Name: "f", Module: tiny, Mode: ModePooled})
	if err != nil {
		t.Fatalf("a module in the disk caches waited for the busy compile slot: %v", err)
	}
	if res, err := f.Invoke(ctx, &protocol.Request{Method: "GET", URI: "/"}); err != nil || res.Response.StatusOrDefault() != 200 {
		t.Fatalf("the function loaded from the disk caches answers %v, %v", res, err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer wcancel()
	if _, err := e.Load(wctx, FunctionSpec{Name: "g", Module: other, Mode: ModePooled}); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting to compile") {
		t.Fatalf("a module that needs the compiler, all slots busy: %v, want it to wait for a slot", err)
	}
}

// Concurrent loads of one module load it once: the others wait and share
// its compiled code. Overlapping wazero CompileModule calls of one module
// race inside wazero v1.12 when it loads from its file cache (the race
// detector caught it with concurrent deploy checks).
func TestConcurrentLoadsOfOneModuleLoadOnce(t *testing.T) {
	tiny := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = t.TempDir()
	ctx := context.Background()
	for _, compiled := range []bool{false, true} { // fresh, then from the disk caches
		e, err := NewEngine(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		hash := sha256.Sum256(tiny)
		before := e.mods.compiles.Load()
		const n = 8
		mods := make([]*module, n)
		sources := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mods[i], sources[i], errs[i] = e.mods.acquire(ctx, hash, tiny)
			}()
		}
		wg.Wait()
		loaded := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("acquire %d: %v", i, errs[i])
			}
			if mods[i] != mods[0] {
				t.Fatalf("acquire %d got another module than acquire 0", i)
			}
			if sources[i] != SourceMemory {
				loaded++
			}
		}
		if c := e.mods.compiles.Load() - before; loaded != 1 || c != 1 {
			t.Fatalf("disk caches filled %v: %d of %d concurrent acquires loaded the module (%v) with %d CompileModule calls, want 1 and 1", compiled, loaded, n, sources, c)
		}
		for _, m := range mods {
			e.mods.release(ctx, m)
		}
		if err := e.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
