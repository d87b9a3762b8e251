package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Engine.Close while modules compile: one in wazero's compiler, which
// cannot be interrupted, and one waiting for its turn
// (MaxConcurrentCompiles is 1), a Load and a Check. Close stops the
// waiting one at once and waits for the other; both fail with
// ErrEngineClosed and have returned when Close returns, so the runtimes and
// the compilation cache are closed only after the compiler is done with
// them. Close used to return at once: the compile then finished in the
// closed cache (wazero panics on its cleared tables, a nil map, which
// takes the process down) and the other compiled with a closed runtime.
func TestEngineCloseDuringCompile(t *testing.T) {
	n := 3000 // functions: about a quarter of a second of compiling
	if raceOn {
		n = 500 // the compiler runs ~15 times slower under -race
	}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// No CacheDir: nothing is cached on disk, so the modules compile.
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())

	// wazero asks a function listener factory in the context for each
	// function's listener inside CompileModule, after decoding and before
	// compiling: the compile is then in wazero's hands. (Without listeners
	// the code is compiled as usual.)
	inCompiler := make(chan struct{})
	var once sync.Once
	var asked atomic.Int64 // listeners asked for: a module's functions each time it reaches the compiler
	ctx := experimental.WithFunctionListenerFactory(context.Background(),
		experimental.FunctionListenerFactoryFunc(func(api.FunctionDefinition) experimental.FunctionListener {
			asked.Add(1)
			once.Do(func() { close(inCompiler) })
			return nil
		}))
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 2)
	go func() {
		_, err := e.Load(ctx, FunctionSpec{Name: "load", Module: slowCompileModule(n), Mode: ModePooled})
		results <- result{"Load", err}
	}()
	go func() {
		err := e.Check(ctx, FunctionSpec{Name: "check", Module: slowCompileModule(n + 1), Mode: ModePooled})
		results <- result{"Check", err}
	}()
	select {
	case <-inCompiler:
	case r := <-results:
		t.Fatalf("%s returned before any module reached the compiler: %v", r.what, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("no module reached the compiler within 30s")
	}

	start := time.Now()
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("Close returned after %v", time.Since(start))
	// A compile holds its turn (the semaphore) until it leaves wazero.
	if len(e.mods.compiling) != 0 {
		t.Error("a module was still compiling when Close returned")
	}
	// The waiting one stopped rather than compile for an engine going away.
	if got, one := asked.Load(), int64(n+3); got > one {
		t.Errorf("%d functions reached the compiler, more than one module's %d", got, one)
	}
	for range 2 {
		select {
		case r := <-results:
			if !errors.Is(r.err, ErrEngineClosed) {
				t.Errorf("%s ended with %v, want ErrEngineClosed", r.what, r.err)
			}
			t.Logf("%s: %v", r.what, r.err)
		case <-time.After(30 * time.Second):
			t.Fatal("a Load or Check still running 30s after Close returned")
		}
	}
}

// slowCompileModule returns a reactor speaking the pooled ABI (like
// testdata/wat/tiny-reactor.wat, answering 200 with an empty body) with n
// more functions of straight-line arithmetic that nothing calls: wazero
// compiles them all, in about a millisecond each (a few hundred bytes of
// code each), and the rewrite barely looks at them.
func slowCompileModule(n int) []byte {
	uleb := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	section := func(m []byte, id byte, body []byte) []byte {
		return append(uleb(append(m, id), uint64(len(body))), body...)
	}
	vec := func(items ...[]byte) []byte {
		b := uleb(nil, uint64(len(items)))
		for _, it := range items {
			b = append(b, it...)
		}
		return b
	}
	name := func(s string) []byte { return append(uleb(nil, uint64(len(s))), s...) }
	body := func(code ...byte) []byte {
		b := append([]byte{0x00}, code...) // no locals
		return append(uleb(nil, uint64(len(b))), b...)
	}
	const i32, i64 = 0x7f, 0x7e
	m := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	m = section(m, 1, vec([]byte{0x60, 1, i32, 1, i32}, []byte{0x60, 1, i32, 1, i64}))
	funcs := [][]byte{{0}, {1}}
	for range n {
		funcs = append(funcs, []byte{0})
	}
	m = section(m, 3, vec(funcs...))
	m = section(m, 5, vec([]byte{0x00, 2})) // two pages: the request buffer is at 65536
	m = section(m, 7, vec(
		append(name(exportMemory), 0x02, 0),
		append(name(exportReserve), 0x00, 0),
		append(name(exportHandle), 0x00, 1),
	))
	codes := [][]byte{
		body(0x41, 0x80, 0x80, 0x04, 0x0b),                             // i32.const 65536
		body(0x42, 0x80, 0x08, 0x42, 0x20, 0x86, 0x42, 48, 0x84, 0x0b), // 1024 << 32 | 48
	}
	var filler []byte
	filler = append(filler, 0x20, 0) // local.get 0
	for i := range 100 {
		// i32.const i; i32.mul; local.get 0; i32.xor; i32.const 3; i32.rotl
		filler = append(filler, 0x41, byte(i&0x3f), 0x6c, 0x20, 0, 0x73, 0x41, 3, 0x77)
	}
	filler = append(filler, 0x0b)
	for range n {
		codes = append(codes, body(filler...))
	}
	m = section(m, 10, vec(codes...))
	// tiny-reactor's response (48 bytes) at 1024.
	return section(m, 11, vec(append([]byte{0x00, 0x41, 0x80, 0x08, 0x0b}, name(tinyResponse)...)))
}

const tinyResponse = "GJS\x01\x01\x02\xc8\x01\x02\x17\x0cContent-Typetext/plain\x03\x0dhello, wasm!\x0a"
