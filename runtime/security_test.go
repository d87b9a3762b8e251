package runtime_test

// Tests named by docs/security-model.md for guarantees the other test
// files do not cover: the fallback runtime for modules the loop
// instrumenter cannot handle, guest code that runs before the first
// request, and modules that bring their own memory.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/internal/wasmbin"
)

// bigRequest is over the 4096 bytes at which the fallback guests loop.
func bigRequest() []byte { return make([]byte, 8192) }

// fallbackModes are the modes a reactor without reset state can run in.
var fallbackModes = []modeCase{
	{"isolated", runtime.ModeIsolated, runtime.ResetNone, false},
	{"pooled", runtime.ModePooled, runtime.ResetNone, false},
	{"pooled-cow", runtime.ModePooled, runtime.ResetCoW, false},
}

// Modules that are not loop-instrumented (one with a wasm start section,
// one with an instruction the instrumenter refuses) run on wazero's
// WithCloseOnContextDone runtime: an infinite loop in the handler is still
// stopped at the function's timeout, as ErrTimeout, and the function
// answers the next request, in every mode.
func TestFallbackRuntimeStopsInfiniteLoop(t *testing.T) {
	startSection := wat(t, "start-section")
	unsupported := hiddenLoopReactor()
	// Preconditions: these are the two ways into the fallback.
	if !wasmbin.HasStartSection(startSection) {
		t.Fatal("start-section.wat has no start section")
	}
	if _, err := wasmbin.InstrumentLoops(unsupported); !errors.Is(err, wasmbin.ErrUnsupportedInstruction) {
		t.Fatalf("InstrumentLoops(hiddenLoopReactor) = %v, want ErrUnsupportedInstruction", err)
	}
	e := newEngine(t)
	const timeout = 300 * time.Millisecond
	for _, mod := range []struct {
		name string
		bin  []byte
	}{{"start-section", startSection}, {"unsupported-instruction", unsupported}, {"start-recurse", wat(t, "start-recurse")}} {
		for _, mc := range fallbackModes {
			t.Run(mod.name+"/"+mc.name, func(t *testing.T) {
				f := load(t, e, runtime.FunctionSpec{Name: mod.name + "-" + mc.name, Module: mod.bin, Mode: mc.mode, Reset: mc.reset,
					Limits: runtime.Limits{Timeout: timeout, MaxInstances: 1, QueueTimeout: 5 * time.Second}})
				if st, body := mustInvoke(t, f, get("/")); st != 200 || body != "hello, wasm!\n" {
					t.Fatalf("before the loop: %d %q", st, body)
				}
				for round := range 2 {
					start := time.Now()
					_, err := invoke(t, f, request("POST", "/", bigRequest()))
					took := time.Since(start)
					if !errors.Is(err, runtime.ErrTimeout) || !strings.Contains(err.Error(), "still running after 300ms") {
						t.Fatalf("round %d: got %v, want ErrTimeout after 300ms", round, err)
					}
					if took < timeout || took > 15*time.Second {
						t.Fatalf("round %d: the loop ended after %v, want about %v", round, took, timeout)
					}
					if st, body := mustInvoke(t, f, get("/")); st != 200 || body != "hello, wasm!\n" {
						t.Fatalf("round %d: after the loop: %d %q", round, st, body)
					}
				}
			})
		}
	}
}

// A wasm start section that never returns runs inside instantiation, before
// the host holds the instance: the invocation's guard still stops it at the
// timeout on every request, the pool's slot is given back (no ErrBusy), and
// other functions on the engine keep serving.
func TestStartSectionLoopIsStopped(t *testing.T) {
	e := newEngine(t)
	good := load(t, e, runtime.FunctionSpec{Name: "good", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	const timeout = 200 * time.Millisecond
	for _, mc := range fallbackModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "start-loop-" + mc.name, Module: wat(t, "start-loop"), Mode: mc.mode, Reset: mc.reset,
				Limits: runtime.Limits{Timeout: timeout, MaxInstances: 1, QueueTimeout: 50 * time.Millisecond}})
			for round := range 3 {
				start := time.Now()
				// A regression would leave the call looping in the start
				// section with nothing to stop it: fail rather than hang
				// until go test's own timeout (the loop's goroutine is
				// then abandoned).
				done := make(chan error, 1)
				go func() {
					_, err := invoke(t, f, get("/"))
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(20 * time.Second):
					t.Fatalf("round %d: a loop in the start section was not stopped within 20s (timeout %v)", round, timeout)
				}
				took := time.Since(start)
				if !errors.Is(err, runtime.ErrTimeout) {
					t.Fatalf("round %d: got %v, want ErrTimeout", round, err)
				}
				// Each round runs the start section again: a cached
				// failure would return at once.
				checkStoppedRound(t, round, f, good, took, timeout)
			}
		})
	}
}

// checkStoppedRound checks what follows a guest stopped at its timeout:
// the call took about the timeout, f kept no instance and runs nothing,
// and good, another function, still answers.
func checkStoppedRound(t *testing.T, round int, f, good *runtime.Function, took, timeout time.Duration) {
	t.Helper()
	if took < timeout || took > 15*time.Second {
		t.Fatalf("round %d: returned after %v, want about %v", round, took, timeout)
	}
	if st := f.Stats(); st.Instances != 0 || st.InFlight != 0 {
		t.Fatalf("round %d: a stopped instance was kept: %+v", round, st)
	}
	if _, body := mustInvoke(t, good, get("/")); body != "hello, wasm!\n" {
		t.Fatalf("round %d: another function: %q", round, body)
	}
}

// An infinite loop in a reactor's _initialize is stopped by the guard of
// the invocation that creates the instance: a timeout naming the
// initialisation, the pool slot given back, and the next request tries a
// new instance (and is stopped again) rather than failing at once or
// waiting for a slot; other functions keep serving.
func TestInitializeLoopIsStopped(t *testing.T) {
	e := newEngine(t)
	good := load(t, e, runtime.FunctionSpec{Name: "good", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	const timeout = 200 * time.Millisecond
	for _, mc := range fallbackModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "init-loop-" + mc.name, Module: wat(t, "init-loop"), Mode: mc.mode, Reset: mc.reset,
				Limits: runtime.Limits{Timeout: timeout, MaxInstances: 1, QueueTimeout: 50 * time.Millisecond}})
			during := "initialising the module"
			if mc.mode == runtime.ModeIsolated {
				during = "starting the module"
			}
			for round := range 3 {
				start := time.Now()
				_, err := invoke(t, f, get("/"))
				took := time.Since(start)
				if !errors.Is(err, runtime.ErrTimeout) || !strings.Contains(err.Error(), during) {
					t.Fatalf("round %d: got %v, want ErrTimeout while %s", round, err, during)
				}
				if runtime.HTTPStatus(err) != 504 {
					t.Fatalf("round %d: HTTPStatus %d, want 504", round, runtime.HTTPStatus(err))
				}
				checkStoppedRound(t, round, f, good, took, timeout)
			}
		})
	}
}

// A module that imports its linear memory (from any module, even one the
// node provides) is refused at deploy: a guest only ever has its own
// memory.
func TestImportedMemoryRefused(t *testing.T) {
	e := newEngine(t)
	for _, name := range []string{"import-memory", "import-memory-wasi"} {
		for _, mode := range []runtime.Mode{runtime.ModeIsolated, runtime.ModePooled} {
			_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "f", Version: "v1", Module: wat(t, name), Mode: mode})
			if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "imports memory") {
				t.Errorf("%s (%s): got %v, want ErrInvalidModule saying it imports memory", name, mode, err)
			}
		}
	}
	if _, ok := e.Function("f"); ok {
		t.Fatal("a refused module was registered")
	}
}

// Guest stdout and stderr are capped at 64 KiB each per invocation by
// default; the rest is dropped.
func TestDefaultOutputCaps(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled})
	for _, stream := range []string{"stdout", "stderr"} {
		res, err := invoke(t, f, get("/"+stream+"?n=200000"))
		if err != nil {
			t.Fatal(err)
		}
		out := res.Stdout
		if stream == "stderr" {
			out = res.Stderr
		}
		kept, rest, _ := strings.Cut(string(out), "\n")
		if len(kept) != 64<<10 || !strings.Contains(rest, "truncated") {
			t.Errorf("%s: kept %d bytes (rest %q), want 65536 and a truncation mark", stream, len(kept), rest)
		}
	}
}

// hiddenLoopReactor returns a pooled-ABI module whose handler, for
// requests over 4096 bytes, calls a function with wazero v1.12's select
// desync (see runtime/internal/wasmbin DESIGN.md and
// TestInstrumentLoopsSelectRefTypeDesync): wazero's compiler sees a loop
// there that its validator does not, so InstrumentLoops refuses the module
// with ErrUnsupportedInstruction and the engine must use its fallback.
// Smaller requests get the tiny-reactor answer.
func hiddenLoopReactor() []byte {
	i32, i64 := byte(0x7f), byte(0x7e)
	functype := func(params, results []byte) []byte {
		return wbCat([]byte{0x60}, wbVec(wbBytes(params)...), wbVec(wbBytes(results)...))
	}
	types := wbVec(
		functype([]byte{i32}, []byte{i32}), // 0: gojinn_v1_reserve
		functype([]byte{i32}, []byte{i64}), // 1: gojinn_v1_handle
		functype(nil, []byte{i32}),         // 2: the hidden loop
		functype(nil, nil),                 // 3: the heap type select names
	)
	funcs := wbVec([]byte{0}, []byte{1}, []byte{2})
	mems := wbVec([]byte{0x00, 2}) // two pages, no maximum
	exports := wbVec(
		wbCat(wbName("memory"), []byte{2, 0}),
		wbCat(wbName("gojinn_v1_reserve"), []byte{0, 0}),
		wbCat(wbName("gojinn_v1_handle"), []byte{0, 1}),
	)
	reserve := []byte{0x41, 0x80, 0x80, 0x04} // i32.const 65536
	handle := wbCat(
		[]byte{0x20, 0x00, 0x41, 0x80, 0x20, 0x4b}, // local.get 0, i32.const 4096, i32.gt_u
		[]byte{0x04, 0x40, 0x10, 0x02, 0x1a, 0x0b}, // if: call 2, drop; end
		[]byte{0x42}, wbSLEB(1024<<32|48), // i64.const: the response at 1024, 48 bytes
	)
	hidden := []byte{
		0x41, 5, 0x41, 1, 0x41, 2, 0x41, 1, // i32.const 5, 1, 2, 1
		0x1c, 0x01, 0x63, 0x03, // select (ref null 3): the compiler reads 0x03 as loop
		0x70,       // i32.rem_u to the validator, the loop's block type to the compiler
		0x0c, 0x00, // br 0
	}
	code := wbVec(wbBody(reserve), wbBody(handle), wbBody(hidden))
	response := "GJS\x01\x01\x02\xc8\x01\x02\x17\x0cContent-Typetext/plain\x03\x0dhello, wasm!\x0a"
	data := wbVec(wbCat([]byte{0x00, 0x41, 0x80, 0x08, 0x0b}, wbName(response))) // at i32.const 1024
	return wbCat([]byte("\x00asm\x01\x00\x00\x00"),
		wbSection(1, types), wbSection(3, funcs), wbSection(5, mems), wbSection(7, exports), wbSection(10, code), wbSection(11, data))
}

func wbCat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func wbULEB(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wbSLEB(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wbVec(items ...[]byte) []byte { return wbCat(wbULEB(uint64(len(items))), wbCat(items...)) }

func wbBytes(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func wbName(s string) []byte { return wbCat(wbULEB(uint64(len(s))), []byte(s)) }

func wbSection(id byte, payload []byte) []byte {
	return wbCat([]byte{id}, wbULEB(uint64(len(payload))), payload)
}

// funcBody encodes a body without locals; end is appended.
func wbBody(instrs []byte) []byte {
	b := wbCat([]byte{0x00}, instrs, []byte{0x0b})
	return wbCat(wbULEB(uint64(len(b))), b)
}
