package runtime_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gojinn/gojinn/runtime"
)

// seriesOf returns, per metric name, how many series of reg carry
// function=name.
func seriesOf(t *testing.T, reg *prometheus.Registry, name string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for family, series := range gather(t, reg) {
		for _, s := range series {
			for _, l := range s.GetLabel() {
				if l.GetName() == "function" && l.GetValue() == name {
					n[family]++
				}
			}
		}
	}
	return n
}

// Unloading a function deletes every runtime series labelled with it,
// whichever they are, and no other function's.
func TestMetricsForgetOnUnload(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A burst of 2 against the guest's 8 lines: some are dropped.
	e, _ := logEngine(t, func(c *runtime.Config) { c.Metrics, c.LogRate, c.LogBurst = m, 0.001, 2 })
	for _, name := range []string{"gone", "kept"} {
		f := load(t, e, runtime.FunctionSpec{Name: name, Module: wat(t, "log"), Mode: runtime.ModePooled})
		mustInvoke(t, f, get("/"))
	}
	before := seriesOf(t, reg, "gone")
	for _, family := range []string{"gojinn_compilations_total", "gojinn_instantiations_total", "gojinn_pool_wait_seconds",
		"gojinn_guest_log_lines_total", "gojinn_guest_log_lines_dropped_total"} {
		if before[family] == 0 {
			t.Fatalf("before the unload, %s has no series of the function: %v", family, before)
		}
	}

	if err := e.Unload(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if left := seriesOf(t, reg, "gone"); len(left) != 0 {
		t.Errorf("series of the unloaded function remain: %v", left)
	}
	if kept := seriesOf(t, reg, "kept"); len(kept) != len(before) {
		t.Errorf("the other function has series in %v, want the %d families it had", kept, len(before))
	}
}

// A rejected deploy of a new name leaves no series of a function that
// never existed: a module that does not compile is counted without the
// function, and that count stays; what the check of a module that
// compiled but failed to initialise counted goes at the next prune,
// which keeps loaded functions and those keep accepts.
func TestMetricsRejectedDeploy(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, func(c *runtime.Config) { c.Metrics = m })
	ctx := context.Background()

	bad := runtime.FunctionSpec{Name: "bad2", Version: "v1", Module: []byte("not wasm")}
	if err := e.Check(ctx, bad); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("check of a bad module: %v", err)
	}
	if _, err := e.Load(ctx, bad); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("load of a bad module: %v", err)
	}
	if left := seriesOf(t, reg, "bad2"); len(left) != 0 {
		t.Errorf("a module that did not compile left series of its function: %v", left)
	}
	failed := lbl("function", "", "outcome", "error")
	if got := gather(t, reg).value("gojinn_compilations_total", failed); got != 2 {
		t.Errorf("failed compilations counted without a function = %v, want 2", got)
	}

	tiny := wat(t, "tiny-reactor")
	live := load(t, e, runtime.FunctionSpec{Name: "live", Module: tiny, Mode: runtime.ModePooled})
	mustInvoke(t, live, get("/"))
	initFails := runtime.FunctionSpec{Name: "bad3", Module: wat(t, "init-loop"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{Timeout: 100 * time.Millisecond}}
	if err := e.Check(ctx, initFails); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("check of a module that cannot initialise: %v", err)
	}
	if err := e.Check(ctx, runtime.FunctionSpec{Name: "deploying", Module: tiny, Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad3", "deploying"} {
		if len(seriesOf(t, reg, name)) == 0 {
			t.Fatalf("the check of %s counted nothing under its name; the prune below tests nothing", name)
		}
	}

	var asked []string
	e.PruneMetrics(func(name string) bool {
		asked = append(asked, name)
		return name == "deploying" // committed, not loaded yet
	})
	slices.Sort(asked)
	if want := []string{"bad3", "deploying", "live"}; !slices.Equal(asked, want) {
		t.Errorf("keep was asked about %q, want %q", asked, want)
	}
	if left := seriesOf(t, reg, "bad3"); len(left) != 0 {
		t.Errorf("after the prune, the rejected bad3 has series: %v", left)
	}
	for _, name := range []string{"live", "deploying"} {
		if len(seriesOf(t, reg, name)) == 0 {
			t.Errorf("the prune deleted the series of %s", name)
		}
	}
	if got := gather(t, reg).value("gojinn_compilations_total", failed); got != 2 {
		t.Errorf("after the prune, failed compilations = %v, want 2", got)
	}
}
