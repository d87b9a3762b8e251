package runtime_test

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// abuseCases are misbehaviours of the Go abuse guest and the error each
// must produce. Limits are set in abuseLimits.
var abuseCases = []struct {
	path   string
	want   error // nil: a response with status
	status int
	cmd    error // when set, what a command build gives instead of want
}{
	{"/loop", runtime.ErrCPUBudget, 0, nil}, // CPU budget < timeout
	{"/spin?n=30000", runtime.ErrCPUBudget, 0, nil},
	{"/panic", nil, 500, nil}, // the SDK recovers a handler panic
	{"/badstatus", nil, 500, nil},
	// An unrecovered panic in a goroutine is fatal to the Go runtime: a
	// command exits with code 2, a reactor stops with unreachable.
	{"/goexit", runtime.ErrTrap, 0, runtime.ErrExit},
	{"/exit?n=3", runtime.ErrExit, 0, nil},
	{"/oom", runtime.ErrMemoryLimit, 0, nil},
	{"/stack", runtime.ErrMemoryLimit, 0, nil}, // Go stacks live in linear memory
	{"/big?n=300000", runtime.ErrBadResponse, 0, nil},
}

// The CPU budget is far below the timeout, so that CPU-bound abuse ends
// by the budget even on a loaded machine.
var abuseLimits = runtime.Limits{
	MemoryBytes:     16 << 20,
	Timeout:         60 * time.Second,
	CPUTime:         time.Second,
	MaxResponseBody: 200_000,
	MaxInstances:    2,
}

func TestAbuseEndsOneInvocation(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: "abuse-" + mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset, Limits: abuseLimits})
			for _, c := range abuseCases {
				if c.cmd != nil && mc.cmd {
					c.want = c.cmd
				}
				res, err := invoke(t, f, get(c.path))
				switch {
				case c.want != nil && !errors.Is(err, c.want):
					t.Errorf("%s: got %v, want %v", c.path, err, c.want)
				case c.want == nil && err != nil:
					t.Errorf("%s: unexpected error %v", c.path, err)
				case c.want == nil && res.Response.StatusOrDefault() != c.status:
					t.Errorf("%s: status %d, want %d", c.path, res.Response.StatusOrDefault(), c.status)
				}
				// The same function keeps serving after every misbehaviour.
				if st, body := mustInvoke(t, f, get("/ok")); st != 200 || body != "ok" {
					t.Fatalf("after %s: /ok answered %d %q", c.path, st, body)
				}
			}
		})
	}
}

func TestAbuseErrorsSayWhatHappened(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled, Limits: abuseLimits})
	for path, want := range map[string]string{
		"/loop":         "used more than 1s of CPU time",
		"/oom":          "bytes of linear memory (the memory limit of 16777216 bytes less ",
		"/exit?n=3":     "exited with code 3",
		"/big?n=300000": "the limit is 200000",
		// Past what the host reads at all: the message names the limit the
		// operator set, not only the sum it derives from it.
		"/big?n=1500000": "more than a body of max_response_body (200000 bytes)",
	} {
		_, err := invoke(t, f, get(path))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not say %q", path, err, want)
		}
		if runtime.HTTPStatus(err) < 500 {
			t.Errorf("%s: HTTPStatus %d, want 5xx", path, runtime.HTTPStatus(err))
		}
	}
}

// A guest that waits without using CPU is stopped by the wall clock.
func TestWallClockTimeout(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset,
				Limits: runtime.Limits{Timeout: 500 * time.Millisecond}})
			start := time.Now()
			_, err := invoke(t, f, get("/sleep?n=20000"))
			if !errors.Is(err, runtime.ErrTimeout) || !strings.Contains(err.Error(), "still running after 500ms") {
				t.Fatalf("got %v, want a timeout after 500ms", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Fatalf("the 20 s sleep was not cut short: returned after %v", d)
			}
		})
	}
}

// WAT guests misbehave at the WebAssembly level, below any SDK.
func TestAbuseWAT(t *testing.T) {
	e := newEngine(t)
	const long, short = 10 * time.Second, 200 * time.Millisecond
	cases := []struct {
		mod     string
		mode    runtime.Mode
		want    error
		timeout time.Duration
		memory  uint64 // the memory limit
	}{
		{"trap", runtime.ModePooled, runtime.ErrTrap, long, 1 << 20},
		{"loop", runtime.ModePooled, runtime.ErrTimeout, short, 1 << 20},
		{"stackoverflow", runtime.ModePooled, runtime.ErrTrap, long, 1 << 20},
		{"growmem", runtime.ModePooled, runtime.ErrMemoryLimit, long, 1 << 20},
		{"badptr", runtime.ModePooled, runtime.ErrBadResponse, long, 1 << 20},
		{"garbage", runtime.ModePooled, runtime.ErrBadResponse, long, 1 << 20},
		{"reserve-oob", runtime.ModePooled, runtime.ErrTrap, long, 1 << 20},
		{"trap", runtime.ModeIsolated, runtime.ErrTrap, long, 1 << 20},
		{"cmd-garbage", runtime.ModeIsolated, runtime.ErrBadResponse, long, 1 << 20},
		{"cmd-loop", runtime.ModeIsolated, runtime.ErrTimeout, short, 1 << 20},
		{"recurse", runtime.ModePooled, runtime.ErrTimeout, short, 1 << 20},
		{"cmd-recurse", runtime.ModeIsolated, runtime.ErrTimeout, short, 1 << 20},
		{"bulkfill", runtime.ModePooled, runtime.ErrTimeout, short, 64 << 20},
		{"bulkfill-straight", runtime.ModePooled, runtime.ErrTimeout, short, 64 << 20},
		{"tablefill", runtime.ModePooled, runtime.ErrTimeout, short, 80 << 20}, // its table takes 64 MB of the limit
	}
	for _, c := range cases {
		t.Run(c.mod+"-"+string(c.mode), func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: c.mod, Module: wat(t, c.mod), Mode: c.mode,
				Limits: runtime.Limits{Timeout: c.timeout, MemoryBytes: c.memory}})
			for i := 0; i < 2; i++ { // twice: a broken instance must not be reused
				// A guest that runs until stopped must also let the host
				// collect garbage meanwhile: if it never left wazero's
				// machine code, the stop-the-world would wait for it, and
				// so would the timer that stops it.
				start := time.Now()
				if c.want == runtime.ErrTimeout {
					defer time.AfterFunc(c.timeout/4, goruntime.GC).Stop()
				}
				if _, err := invoke(t, f, get("/")); !errors.Is(err, c.want) {
					t.Fatalf("call %d: got %v, want %v", i, err, c.want)
				}
				if d := time.Since(start); c.want == runtime.ErrTimeout && d > 5*c.timeout {
					t.Errorf("call %d: stopped after %v, more than 5 times the timeout", i, d)
				}
			}
		})
	}
}

// Misbehaving functions under concurrent load do not disturb a healthy
// function served by the same engine.
func TestAbuseUnderConcurrentLoad(t *testing.T) {
	e := newEngine(t)
	good := load(t, e, runtime.FunctionSpec{Name: "good", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	bad := load(t, e, runtime.FunctionSpec{Name: "bad", Module: abuseReactor(t), Mode: runtime.ModePooled, Reset: runtime.ResetAuto,
		Limits: runtime.Limits{MemoryBytes: 64 << 20, Timeout: time.Second, CPUTime: 200 * time.Millisecond, MaxInstances: 4, QueueTimeout: 10 * time.Second}})
	paths := []string{"/loop", "/panic", "/oom", "/exit?n=1", "/stack", "/spin?n=2000", "/sleep?n=3000", "/ok"}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() { // abuser
			defer wg.Done()
			for i := 0; i < 6; i++ {
				_, _ = bad.Invoke(ctx, get(paths[(w+i)%len(paths)]))
			}
		}()
		go func() { // healthy traffic
			defer wg.Done()
			healthyTraffic(ctx, good, errs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, body := mustInvoke(t, bad, get("/ok")); st != 200 || body != "ok" {
		t.Fatalf("abused function no longer serves: %d %q", st, body)
	}
}

// The caller's context stops a guest in every mode, also a warm pooled
// instance (whose guard is reused from call to call), and the function
// keeps serving afterwards; a context that has already ended stops the
// call at once.
func TestCallerCancelStopsGuest(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: "cancel-" + mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset,
				Limits: runtime.Limits{Timeout: time.Minute, MaxInstances: 1}})
			for round := range 3 {
				mustInvoke(t, f, get("/ok")) // warm the instance
				ctx, cancel := context.WithCancel(context.Background())
				timer := time.AfterFunc(100*time.Millisecond, cancel)
				start := time.Now()
				_, err := f.Invoke(ctx, get("/sleep?n=20000"))
				timer.Stop()
				cancel()
				if !errors.Is(err, runtime.ErrCanceled) {
					t.Fatalf("round %d: got %v, want ErrCanceled", round, err)
				}
				if d := time.Since(start); d > 15*time.Second {
					t.Fatalf("round %d: the sleep was not cut short: %v", round, d)
				}
				if _, err := f.Invoke(ctx, get("/ok")); !errors.Is(err, runtime.ErrCanceled) {
					t.Fatalf("round %d: with an ended context: got %v, want ErrCanceled", round, err)
				}
			}
			// Many short calls with a short timeout: a timer left over from
			// one call must not stop the next.
			f = load(t, e, runtime.FunctionSpec{Name: "cancel-" + mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset,
				Limits: runtime.Limits{Timeout: 2 * time.Second, MaxInstances: 1}})
			n := 200 // the reusable guard is the pooled modes'
			if mc.mode == runtime.ModeIsolated {
				n = 5
			}
			for i := range n {
				if st, body := mustInvoke(t, f, get("/ok")); st != 200 || body != "ok" {
					t.Fatalf("call %d: %d %q", i, st, body)
				}
			}
		})
	}
}

// healthyTraffic makes 200 calls to good (the tiny reactor) while abuse
// runs beside it, and reports to errs the first that fails or answers
// anything but its greeting.
func healthyTraffic(ctx context.Context, good *runtime.Function, errs chan<- error) {
	for i := range 200 {
		res, err := good.Invoke(ctx, get("/"))
		if err != nil {
			errs <- fmt.Errorf("healthy call %d: %w", i, err)
			return
		}
		if string(res.Response.Body) != "hello, wasm!\n" {
			errs <- fmt.Errorf("healthy call %d: body %q", i, res.Response.Body)
			return
		}
	}
}
