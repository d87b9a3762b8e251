package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// latencyKV answers every read after a delay, as a store behind a slow
// network would: the guest waits in a host call.
type latencyKV struct {
	*runtime.MemKV
	delay time.Duration
}

func (k latencyKV) Get(ctx context.Context, ns, key string, lin bool) ([]byte, uint64, error) {
	select {
	case <-time.After(k.delay):
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	return k.MemKV.Get(ctx, ns, key, lin)
}

// waitAndAbuse loads, in mode mc and under limits, the KV guest (whose
// reads wait on e's slow store) and the abuse guest.
func waitAndAbuse(t *testing.T, e *runtime.Engine, mc modeCase, limits runtime.Limits) (kv, ab *runtime.Function) {
	t.Helper()
	kv = load(t, e, runtime.FunctionSpec{Name: "kvwait-" + mc.name, Module: kvGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset, Limits: limits})
	mod := mc.abuse(t)
	ab = load(t, e, runtime.FunctionSpec{Name: "abuse-" + mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset, Limits: limits})
	return kv, ab
}

// timedGet invokes f with a GET of target and says how long it took.
func timedGet(t *testing.T, f *runtime.Function, target string) (*runtime.Result, time.Duration, error) {
	t.Helper()
	start := time.Now()
	res, err := invoke(t, f, get(target))
	return res, time.Since(start), err
}

// The CPU budget charges what the guest computes, not what it waits for:
// a guest spinning in a loop is stopped at its budget, long before its
// wall-clock timeout, while a guest that waits on a slow host call (or
// sleeps) for four times its budget finishes and is charged a fraction of
// it. Every mode.
func TestCPUBudgetChargesComputeNotWaits(t *testing.T) {
	// In isolated mode the budget also bounds the instance's start
	// (instantiation and initialisation, tens of milliseconds for this Go
	// guest under -race on a slow host): 250 ms leaves it room. Pooled
	// instances start outside the budget
	// (TestCPUBudgetLeavesPooledInitialisationOut).
	const budget = 250 * time.Millisecond
	const wait = 4 * budget
	limits := runtime.Limits{CPUTime: budget, Timeout: 20 * time.Second}
	e := kvEngine(t, latencyKV{runtime.NewMemKV(), wait})
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			kv, ab := waitAndAbuse(t, e, mc, limits)
			res, took, err := timedGet(t, kv, "/get?k=absent")
			if err != nil {
				t.Fatalf("waiting %v on a host call with a %v CPU budget: %v", wait, budget, err)
			}
			if st := res.Response.StatusOrDefault(); st != 404 {
				t.Fatalf("get of an absent key: %d %q, want 404", st, res.Response.Body)
			}
			if took < wait {
				t.Fatalf("the invocation took %v, less than the host call's %v delay: the wait did not happen", took, wait)
			}
			if res.CPUTime >= budget {
				t.Fatalf("charged %v of CPU for a %v wait; the budget is %v", res.CPUTime, took, budget)
			}

			res, err = invoke(t, ab, get(fmt.Sprintf("/sleep?n=%d", wait.Milliseconds())))
			if err != nil || string(res.Response.Body) != "slept" {
				t.Fatalf("sleeping %v with a %v CPU budget: %v", wait, budget, err)
			}
			if res.CPUTime >= budget {
				t.Fatalf("charged %v of CPU for a %v sleep; the budget is %v", res.CPUTime, wait, budget)
			}

			_, took, err = timedGet(t, ab, "/loop")
			if !errors.Is(err, runtime.ErrCPUBudget) {
				t.Fatalf("an endless loop with a %v CPU budget: %v, want ErrCPUBudget", budget, err)
			}
			if took > limits.Timeout/2 {
				t.Fatalf("the loop ran %v; the CPU budget is %v", took, budget)
			}
			if msg := err.Error(); !strings.Contains(msg, "CPU time") || !strings.Contains(msg, budget.String()) {
				t.Fatalf("error %q does not say the CPU budget (%v) was used up", msg, budget)
			}
			if status := runtime.HTTPStatus(err); status != http.StatusServiceUnavailable {
				t.Fatalf("a client sees %d for an exhausted CPU budget, want 503", status)
			}
			// The function serves the next request.
			if res, err := invoke(t, ab, get("/ok")); err != nil || string(res.Response.Body) != "ok" {
				t.Fatalf("after the budget stop: %v", err)
			}
		})
	}
}

// Without a CPU budget the CPU time is still reported (metrics, traces)
// but read lazily (see guard): a call that waits in host calls, a slow KV
// read or a sleep, is not charged for the wait, and one that computes is
// charged for it, whether the call ends before the clock is first read or
// long after. Every mode.
func TestCPUTimeWithoutBudget(t *testing.T) {
	const wait = 400 * time.Millisecond
	limits := runtime.Limits{Timeout: 20 * time.Second}
	e := kvEngine(t, latencyKV{runtime.NewMemKV(), wait})
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			kv, ab := waitAndAbuse(t, e, mc, limits)
			res, took, err := timedGet(t, kv, "/get?k=absent")
			if err != nil || res.Response.StatusOrDefault() != 404 {
				t.Fatalf("get of an absent key behind a %v delay: %v", wait, err)
			}
			if took < wait || res.CPUTime >= wait/2 {
				t.Fatalf("a %v call waiting %v on KV was charged %v of CPU", took, wait, res.CPUTime)
			}

			res, err = invoke(t, ab, get("/sleep?n=400"))
			if err != nil || string(res.Response.Body) != "slept" {
				t.Fatalf("sleep: %v", err)
			}
			if res.CPUTime >= wait/2 {
				t.Fatalf("charged %v of CPU for a %v sleep", res.CPUTime, wait)
			}

			res, took, err = timedGet(t, ab, "/spin?n=400")
			if err != nil || string(res.Response.Body) != "spun" {
				t.Fatalf("spin: %v", err)
			}
			// The guest computes for 400ms of wall time; on a loaded
			// machine its thread gets less than all of it.
			if res.CPUTime < wait/10 || res.CPUTime > took {
				t.Fatalf("charged %v of CPU for %v of computing (the call took %v)", res.CPUTime, wait, took)
			}

			for range 3 { // short calls, which read no clock
				res, took, err = timedGet(t, ab, "/ok")
				if err != nil || res.CPUTime <= 0 || res.CPUTime > took {
					t.Fatalf("a %v call was charged %v of CPU (%v)", took, res.CPUTime, err)
				}
			}
		})
	}
}

// A short call that waits in a KV call, ending before its CPU clock is
// first read (lazyCPUAfter), is charged its busy time without the wait:
// about what the same call costs when the KV answers at once. (Comparing
// with that control, rather than with a fixed share of the wait, keeps the
// test meaningful where the guest's own work is slow: under -race on a
// slow machine it takes 300-450 us of the 700.)
func TestCPUTimeShortKVWait(t *testing.T) {
	const wait = 700 * time.Microsecond
	slow := kvEngine(t, latencyKV{runtime.NewMemKV(), wait})
	fast := kvEngine(t, latencyKV{runtime.NewMemKV(), 0})
	for _, mc := range allModes {
		if mc.mode != runtime.ModePooled {
			continue // an isolated call instantiates for milliseconds
		}
		t.Run(mc.name, func(t *testing.T) {
			var fns [2]*runtime.Function
			for i, e := range []*runtime.Engine{slow, fast} {
				fns[i] = load(t, e, runtime.FunctionSpec{Name: "kvshort-" + mc.name, Module: kvGuest(t, false), Mode: mc.mode, Reset: mc.reset,
					Limits: runtime.Limits{MaxInstances: 1}})
				invoke(t, fns[i], get("/get?k=absent")) // warm
			}
			var charged [2][]time.Duration // waiting, control
			for range 7 {
				for i, f := range fns {
					res, err := invoke(t, f, get("/get?k=absent"))
					if err != nil || res.Response.StatusOrDefault() != 404 {
						t.Fatalf("get: %v", err)
					}
					charged[i] = append(charged[i], res.CPUTime)
				}
			}
			for i := range charged {
				slices.Sort(charged[i])
			}
			waiting, control := charged[0][3], charged[1][3] // medians
			if waiting <= 0 || waiting-control >= wait/2 {
				t.Fatalf("calls waiting %v on KV were charged %v of CPU, the same calls without the wait %v (medians of %v and %v)",
					wait, waiting, control, charged[0], charged[1])
			}
		})
	}
}

// A pooled instance is made once for many requests, so its initialisation
// (instantiation, _initialize, the priming call) is bounded by the timeout
// but not charged to the CPU budget of the request that happened to need
// it: a budget smaller than the initialisation must not fail every cold
// request. An isolated instance is made for one request, whose budget pays
// for it.
func TestCPUBudgetLeavesPooledInitialisationOut(t *testing.T) {
	e := newEngine(t)
	const budget = 5 * time.Millisecond
	limits := runtime.Limits{CPUTime: budget, Timeout: 30 * time.Second}
	for _, mc := range fallbackModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "init-slow-" + mc.name, Module: wat(t, "init-slow"),
				Mode: mc.mode, Reset: mc.reset, Limits: limits})
			start := time.Now()
			res, err := invoke(t, f, get("/"))
			took := time.Since(start)
			if mc.mode == runtime.ModeIsolated {
				if !errors.Is(err, runtime.ErrCPUBudget) {
					t.Fatalf("isolated: a long initialisation under a %v budget: %v, want ErrCPUBudget", budget, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the cold request (%v, initialisation included) with a %v CPU budget: %v", took, budget, err)
			}
			if took < 2*budget {
				t.Fatalf("the first request took %v: the initialisation computes for less than twice the %v budget, which proves nothing", took, budget)
			}
			if body := string(res.Response.Body); body != "hello, wasm!\n" {
				t.Fatalf("body %q", body)
			}
			if res.CPUTime >= budget {
				t.Fatalf("the cold request was charged %v of CPU, over its %v budget: the initialisation was counted", res.CPUTime, budget)
			}
			if _, body := mustInvoke(t, f, get("/")); body != "hello, wasm!\n" {
				t.Fatalf("warm request: %q", body)
			}
		})
	}
}
