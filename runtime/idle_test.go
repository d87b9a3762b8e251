package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/prometheus/client_golang/prometheus"
)

// idleBody decodes the 4-byte counter the idle test guests answer with.
func idleBody(t *testing.T, f *runtime.Function, i int) uint32 {
	t.Helper()
	status, body := mustInvoke(t, f, get("/"))
	if status != 200 || len(body) != 4 {
		t.Fatalf("request %d: %d %q", i, status, body)
	}
	return binary.LittleEndian.Uint32([]byte(body))
}

// A pooled instance of a guest that exports gojinn_v1_idle gets an idle
// call after every 64 requests, between two requests: the request after it
// sees it done.
func TestIdleCallsBetweenRequests(t *testing.T) {
	e, reg := idleEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "counter", Module: wat(t, "idle-counter"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1}})
	for i := range 200 {
		if got, want := idleBody(t, f, i), uint32(i/64); got != want {
			t.Fatalf("request %d saw %d idle calls, want %d", i, got, want)
		}
	}
	if n := gather(t, reg).value("gojinn_idle_calls_total", lbl("function", "counter", "outcome", "ok")); n != 3 {
		t.Errorf("gojinn_idle_calls_total{outcome=ok} = %v, want 3", n)
	}
}

// idleEngine is an engine with metrics in a registry of its own.
func idleEngine(t *testing.T) (*runtime.Engine, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return newEngine(t, func(c *runtime.Config) { c.Metrics = m }), reg
}

// An instance whose idle call fails is discarded; no request fails for it.
func TestIdleCallFailureDiscardsTheInstance(t *testing.T) {
	e, reg := idleEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "trap", Module: wat(t, "idle-trap"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1}})
	for i := range 150 {
		// Each instance serves 64 requests, then its idle call traps and
		// the next request gets a new one.
		if got, want := idleBody(t, f, i), uint32(i%64+1); got != want {
			t.Fatalf("request %d was the instance's request %d, want %d", i, got, want)
		}
	}
	if n := gather(t, reg).value("gojinn_idle_calls_total", lbl("function", "trap", "outcome", "error")); n != 2 {
		t.Errorf("gojinn_idle_calls_total{outcome=error} = %v, want 2", n)
	}
}

// A gojinn_v1_idle of the wrong type is refused when the module is loaded.
func TestIdleExportSignature(t *testing.T) {
	e := newEngine(t)
	_, err := e.Load(t.Context(), runtime.FunctionSpec{Name: "bad", Module: wat(t, "idle-badsig"), Mode: runtime.ModePooled})
	if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "gojinn_v1_idle") {
		t.Fatalf("got %v, want ErrInvalidModule naming gojinn_v1_idle", err)
	}
}

// The Go SDK collects in the idle call when the heap is due: a guest making
// 16 KiB of garbage per request (16 MiB through a 4 MiB heap goal) is
// collected there and never by Go's own pacing; with GOGC in its env the
// SDK leaves collection to Go.
func TestGoGuestCollectsInIdleCalls(t *testing.T) {
	e := newEngine(t)
	for _, c := range []struct {
		name string
		env  map[string]string
	}{{"sdk", nil}, {"gogc-set", map[string]string{"GOGC": "100"}}} {
		t.Run(c.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "gc-" + c.name, Module: abuseReactor(t), Mode: runtime.ModePooled,
				Env: c.env, Limits: runtime.Limits{MaxInstances: 1}})
			for range 1000 {
				mustInvoke(t, f, get("/garbage?n=16"))
			}
			_, body := mustInvoke(t, f, get("/gcstats"))
			var forced, automatic int
			if _, err := fmt.Sscanf(body, "forced=%d automatic=%d", &forced, &automatic); err != nil {
				t.Fatalf("%q: %v", body, err)
			}
			if c.env == nil && (forced < 3 || automatic != 0) {
				t.Errorf("%s; want every collection forced by the idle calls", body)
			}
			if c.env != nil && (forced != 0 || automatic < 3) {
				t.Errorf("%s; want Go's own collections alone", body)
			}
		})
	}
}

// An idle call may outlast a request timeout (a collection of a large heap
// at once): it is bounded by the longer of the timeout and 10 s, so an
// instance whose idle call takes tenths of a second under a 50 ms timeout
// keeps serving.
func TestIdleCallOutlastsTheRequestTimeout(t *testing.T) {
	e, reg := idleEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "slow", Module: wat(t, "idle-slow"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, Timeout: 50 * time.Millisecond, QueueTimeout: 30 * time.Second}})
	for i := range 70 {
		if got, want := idleBody(t, f, i), uint32(i+1); got != want {
			t.Fatalf("request %d was the instance's request %d, want %d: the instance was replaced", i, got, want)
		}
	}
	if n := gather(t, reg).value("gojinn_idle_calls_total", lbl("function", "slow", "outcome", "ok")); n != 1 {
		t.Errorf("gojinn_idle_calls_total{outcome=ok} = %v, want 1", n)
	}
}

// Closing the engine stops an idle call under way instead of waiting out
// its bound.
func TestEngineCloseStopsIdleCalls(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "loop", Module: wat(t, "idle-loop"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1}})
	for range 64 { // the 64th starts the idle call, which loops
		mustInvoke(t, f, get("/"))
	}
	closed := make(chan error, 1)
	go func() { closed <- e.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(8 * time.Second): // the idle call's own bound is 10 s
		t.Fatal("Close waited for the looping idle call")
	}
}

// A function with a CPU budget cannot spend more in an idle call than the
// 64 requests before it could have: an idle call that spins is stopped by
// that budget (64 ms here), long before the 10 s bound, and its instance
// discarded.
func TestIdleCallHasACPUBudget(t *testing.T) {
	e, reg := idleEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "budget", Module: wat(t, "idle-loop"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, CPUTime: time.Millisecond, QueueTimeout: 30 * time.Second}})
	for range 64 { // the 64th starts the idle call, which spins
		mustInvoke(t, f, get("/"))
	}
	start := time.Now()
	mustInvoke(t, f, get("/")) // waits for the instance or its replacement
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("the next request waited %v: the idle call was not stopped by its CPU budget", waited)
	}
	if n := gather(t, reg).value("gojinn_idle_calls_total", lbl("function", "budget", "outcome", "error")); n != 1 {
		t.Errorf("gojinn_idle_calls_total{outcome=error} = %v, want 1", n)
	}
}
