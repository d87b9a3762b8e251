package runtime_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gojinn/gojinn/runtime"
)

// A Go guest learns its memory limit: one keeping nearly half of it live
// and churning garbage would otherwise grow its heap toward twice the live
// size and fail at the limit (the control, with GOMEMLIMIT=off, shows
// that it does). The operator's GOMEMLIMIT wins over the host's.
func TestGoGuestGetsMemoryLimit(t *testing.T) {
	const limit = 64 << 20
	const retain = "/retain?n=30&c=64" // 30 MiB live, 64 MiB of garbage
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			spec := func(name string, env map[string]string) runtime.FunctionSpec {
				return runtime.FunctionSpec{Name: mc.name + "-" + name, Module: mod, Mode: mc.mode, Reset: mc.reset,
					Env: env, Limits: runtime.Limits{MemoryBytes: limit, MaxInstances: 1}}
			}
			f := load(t, e, spec("host", nil))
			_, v := mustInvoke(t, f, get("/env?k=GOMEMLIMIT"))
			val, _, _ := cutEnvReply(v)
			n, err := strconv.ParseUint(val, 10, 64)
			// Seven eighths of what the limit leaves above the module's
			// initial memory (a few MiB for this guest).
			if err != nil || n > limit*7/8 || n < (limit-16<<20)*7/8 {
				t.Fatalf("GOMEMLIMIT = %q, want about seven eighths of the %d-byte limit", v, limit)
			}
			for range 2 {
				if status, body := mustInvoke(t, f, get(retain)); status != 200 {
					t.Fatalf("with GOMEMLIMIT: %d %q", status, body)
				}
			}

			off := load(t, e, spec("off", map[string]string{"GOMEMLIMIT": "off"}))
			if _, v := mustInvoke(t, off, get("/env?k=GOMEMLIMIT")); v[:3] != "off" {
				t.Fatalf("the function's GOMEMLIMIT=off was replaced: %q", v)
			}
			if _, err := invoke(t, off, get(retain)); !errors.Is(err, runtime.ErrMemoryLimit) {
				t.Fatalf("without a memory limit the guest should exhaust its memory; got %v", err)
			}
		})
	}
}

// cutEnvReply splits the abuse guest's /env reply "value|count".
func cutEnvReply(s string) (value, count string, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// A pooled instance with reset whose request grew linear memory is
// retired instead of reset: memory cannot shrink and the restored guest
// would not know the grown pages (the Go runtime grows past them), so the
// next request needing as much would fail at the limit. Requests that do
// not grow memory keep their instance. A Go guest's next instances reserve
// the heap such requests need before their snapshot, so retiring stops;
// with the reserve pinned to 0 by the function's env, every such request
// retires its instance and still succeeds.
func TestResetInstancesThatOutgrowTheirSnapshot(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, func(c *runtime.Config) { c.Metrics = m })
	mod := abuseReactor(t)
	const grow = "/retain?n=20&c=24" // 20 MiB kept, 24 MiB of garbage
	for _, reset := range []runtime.Reset{runtime.ResetCopy, runtime.ResetCoW} {
		for _, pinned := range []bool{false, true} {
			name := "grow-" + string(reset)
			env := map[string]string{}
			if pinned {
				name += "-pinned"
				env["GOJINN_HEAP_RESERVE"] = "0"
			}
			t.Run(name, func(t *testing.T) {
				f := load(t, e, runtime.FunctionSpec{Name: name, Module: mod, Mode: runtime.ModePooled, Reset: reset,
					Env: env, Limits: runtime.Limits{MemoryBytes: 96 << 20, MaxInstances: 1}})
				counts := func() (retired, made float64) {
					g := gather(t, reg)
					return max(0, g.value("gojinn_instances_retired_total", lbl("function", name, "reason", "memory_grown"))),
						g.value("gojinn_instantiations_total", lbl("function", name, "outcome", "ok"))
				}
				mustInvoke(t, f, get("/ok"))
				mustInvoke(t, f, get("/ok"))
				if r, n := counts(); r != 0 || n != 1 {
					t.Fatalf("after requests that did not grow memory: %v retired, %v instantiated; want 0 and 1", r, n)
				}
				const requests = 8
				for i := range requests {
					if status, body := mustInvoke(t, f, get(grow)); status != 200 {
						t.Fatalf("request %d that grows memory: %d %q", i, status, body)
					}
				}
				r, n := counts()
				if pinned {
					// Each request retires its instance; the next makes one.
					if r != requests || n != requests {
						t.Errorf("with the reserve pinned to 0: %v retired, %v instantiated; want %d and %d", r, n, requests, requests)
					}
					return
				}
				// The first request outgrows the snapshot; an instance or
				// two later the reserve holds such requests, and the last
				// instance made serves the rest.
				if r < 1 || r > 2 || n != r+1 {
					t.Errorf("%v retired, %v instantiated after %d growing requests; want 1 or 2, and one more", r, n, requests)
				}
			})
		}
	}
}
