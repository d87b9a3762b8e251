package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gojinn/gojinn/runtime"
)

// gathered is a scrape of a registry: metric name -> its series.
type gathered map[string][]*dto.Metric

func gather(t *testing.T, reg *prometheus.Registry) gathered {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	g := gathered{}
	for _, mf := range mfs {
		g[mf.GetName()] = mf.GetMetric()
	}
	return g
}

// series returns the series of name whose labels include want, or nil.
func (g gathered) series(name string, want map[string]string) *dto.Metric {
	for _, m := range g[name] {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if have[k] != v {
				ok = false
			}
		}
		if ok {
			return m
		}
	}
	return nil
}

// value is a counter's value or a histogram's sample count; -1 when the
// series does not exist.
func (g gathered) value(name string, labels map[string]string) float64 {
	m := g.series(name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// The engine's internal series follow what it does: compilations by
// source (compiled, then shared from memory, then from the disk cache after
// an eviction), instantiations, pool waits, resets, evictions of idle
// instances and idle code; an unloaded function's series go away.
func TestRuntimeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.NewMetrics(reg); err == nil {
		t.Fatal("registering the runtime's series twice in one registry succeeded")
	}
	e := newEngine(t, func(c *runtime.Config) {
		c.Metrics = m
		c.CacheDir = t.TempDir() // nothing prepared yet
		c.JanitorInterval = 20 * time.Millisecond
		c.PoolIdleTimeout = 100 * time.Millisecond
		c.CompiledIdleTimeout = 200 * time.Millisecond
	})
	tiny := wat(t, "tiny-reactor")
	a := load(t, e, runtime.FunctionSpec{Name: "a", Module: tiny, Mode: runtime.ModePooled})
	load(t, e, runtime.FunctionSpec{Name: "b", Module: tiny, Mode: runtime.ModePooled})
	r := load(t, e, runtime.FunctionSpec{Name: "r", Module: tiny, Mode: runtime.ModePooled, Reset: runtime.ResetCopy})
	for range 3 {
		mustInvoke(t, a, get("/"))
	}
	mustInvoke(t, r, get("/"))

	g := gather(t, reg)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gojinn_compilations_total", lbl("function", "a", "source", "compiled", "outcome", "ok"), 1},
		{"gojinn_compilations_total", lbl("function", "b", "source", "memory", "outcome", "ok"), 1},
		{"gojinn_compile_seconds", lbl("source", "compiled"), 1},
		{"gojinn_instantiations_total", lbl("function", "a", "outcome", "ok"), 1}, // one instance served all three
		{"gojinn_instantiations_total", lbl("function", "b", "outcome", "ok"), -1},
		{"gojinn_pool_wait_seconds", lbl("function", "a"), 3},
		{"gojinn_instance_reset_seconds", lbl("strategy", "copy"), 1},
	} {
		if got := g.value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Idle: the janitor closes a's instance, then releases its code.
	deadline := time.Now().Add(10 * time.Second)
	for gather(t, reg).value("gojinn_evictions_total", lbl("function", "a", "kind", "compiled")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no compiled-code eviction of a within 10s: %v", gather(t, reg)["gojinn_evictions_total"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	g = gather(t, reg)
	if got := g.value("gojinn_evictions_total", lbl("function", "a", "kind", "instance")); got != 1 {
		t.Errorf("instance evictions of a = %v, want 1", got)
	}
	// b and r let go of the module too: the next invocation loads it from
	// the prepared-module cache on disk.
	for gather(t, reg).value("gojinn_evictions_total", lbl("function", "b", "kind", "compiled")) != 1 ||
		gather(t, reg).value("gojinn_evictions_total", lbl("function", "r", "kind", "compiled")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("b and r kept their compiled code for 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustInvoke(t, a, get("/"))
	g = gather(t, reg)
	if got := g.value("gojinn_compilations_total", lbl("function", "a", "source", "disk", "outcome", "ok")); got != 1 {
		t.Errorf("after eviction, disk-cache loads of a = %v, want 1", got)
	}
	if got := g.value("gojinn_instantiations_total", lbl("function", "a", "outcome", "ok")); got != 2 {
		t.Errorf("after eviction, instantiations of a = %v, want 2", got)
	}

	if err := e.Unload(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	g = gather(t, reg)
	for _, name := range []string{"gojinn_compilations_total", "gojinn_instantiations_total", "gojinn_pool_wait_seconds", "gojinn_evictions_total"} {
		if s := g.series(name, lbl("function", "a")); s != nil {
			t.Errorf("%s still has a series of the unloaded function a: %v", name, s)
		}
	}
	if g.value("gojinn_compilations_total", lbl("function", "b", "source", "memory")) != 1 {
		t.Error("unloading a deleted b's series too")
	}
}

// Under a recording span, the runtime adds what the edge cannot see: the
// pool wait, whether a sandbox was created and the CPU time on the
// invocation span; child spans for compiling (after an eviction),
// instantiating, and each KV host call with its result, and nothing about
// keys or values.
func TestRuntimeSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	e := newEngine(t, func(c *runtime.Config) {
		c.KV = runtime.NewMemKV()
		c.CacheDir = t.TempDir()
		c.JanitorInterval = 20 * time.Millisecond
		c.PoolIdleTimeout = 50 * time.Millisecond
		c.CompiledIdleTimeout = 100 * time.Millisecond
	})
	f := load(t, e, runtime.FunctionSpec{Name: "kvspan", Module: kvGuest(t, false), Mode: runtime.ModePooled})
	deadline := time.Now().Add(10 * time.Second)
	for f.Stats().Compiled {
		if time.Now().After(deadline) {
			t.Fatal("the compiled code was not evicted within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, span := tp.Tracer("test").Start(context.Background(), "invoke kvspan")
	res, err := f.Invoke(ctx, get("/put?k=secret-key&v=secret-value"))
	if err != nil || res.Response.StatusOrDefault() != 200 {
		t.Fatalf("put: %v %v", err, res)
	}
	if res, err = f.Invoke(ctx, get("/get?k=missing")); err != nil || res.Response.StatusOrDefault() != 404 {
		t.Fatalf("get: %v %v", err, res)
	}
	span.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		byName[s.Name()] = s
	}
	root := byName["invoke kvspan"]
	if root == nil {
		t.Fatalf("no invocation span among %v", names(sr.Ended()))
	}
	attrs := attrMap(root.Attributes())
	for _, k := range []attribute.Key{runtime.AttrPoolWait, runtime.AttrInstantiated, runtime.AttrCPUTime} {
		if _, ok := attrs[k]; !ok {
			t.Errorf("invocation span lacks %s: %v", k, attrs)
		}
	}
	for name, want := range map[string]map[attribute.Key]string{
		"compile kvspan":     {runtime.AttrCompileSource: runtime.SourceDisk},
		"instantiate kvspan": {},
		"kv.put":             {"gojinn.kv.result": "ok", "db.operation.name": "put"},
		"kv.get":             {"gojinn.kv.result": "not_found", "db.operation.name": "get"},
	} {
		s := byName[name]
		if s == nil {
			t.Errorf("no %q span among %v", name, names(sr.Ended()))
			continue
		}
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the invocation span", name, s.Parent().SpanID())
		}
		got := attrMap(s.Attributes())
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, got[k], v)
			}
		}
		for k, v := range got {
			if v == "secret-key" || v == "secret-value" {
				t.Errorf("%s: attribute %s carries the guest's data %q", name, k, v)
			}
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// Guest log lines are counted by source, and lines the rate limit drops
// are counted too.
func TestLogMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := runtime.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := logEngine(t, func(c *runtime.Config) { c.Metrics, c.LogRate, c.LogBurst = m, 0.001, 5 })
	f := load(t, e, runtime.FunctionSpec{Name: "chatty", Module: logGuest(t, false), Mode: runtime.ModePooled})
	mustInvoke(t, f, get("/many?n=20"))
	g := gather(t, reg)
	if got := g.value("gojinn_guest_log_lines_total", lbl("function", "chatty", "source", "guest")); got != 5 {
		t.Errorf("lines kept = %v, want the burst of 5", got)
	}
	if got := g.value("gojinn_guest_log_lines_dropped_total", lbl("function", "chatty")); got != 15 {
		t.Errorf("lines dropped = %v, want 15", got)
	}
	if st := f.Stats(); float64(st.LogsDropped) != g.value("gojinn_guest_log_lines_dropped_total", lbl("function", "chatty")) {
		t.Errorf("Stats says %d dropped, the metric %v", st.LogsDropped, g.value("gojinn_guest_log_lines_dropped_total", lbl("function", "chatty")))
	}
}
