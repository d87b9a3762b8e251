package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The per-request series, whether through the cached series of the
// common case (a successful invocation, a 200) or the label lookups of
// the rest, count into the right series.
func TestInvocationAndRequestSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ok := &runtime.Result{Response: &protocol.Response{Body: []byte("abc")}, CPUTime: time.Millisecond}
	for range 2 {
		m.invocation("f", nil, 2*time.Millisecond, 10, ok)
	}
	m.invocation("g", nil, time.Millisecond, 1, ok)
	m.invocation("f", fmt.Errorf("wrapped: %w", runtime.ErrTimeout), time.Second, 10, nil)
	m.request(3, 200)
	m.request(3, 200)
	m.request(1, 200)
	m.request(1, 404)
	m.request(2, 503)

	// name{label values joined by "/"} -> value (a histogram's sample count)
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, s := range mf.GetMetric() {
			var vals []string
			for _, l := range s.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(vals, "/") + "}"
			switch {
			case s.GetCounter() != nil:
				got[key] = s.GetCounter().GetValue()
			case s.GetHistogram() != nil:
				got[key] = float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"gojinn_invocations_total{f/ok}":              2,
		"gojinn_invocations_total{g/ok}":              1,
		"gojinn_invocations_total{f/timeout}":         1,
		"gojinn_function_duration_seconds{f/ok}":      2,
		"gojinn_function_duration_seconds{g/ok}":      1,
		"gojinn_function_duration_seconds{f/timeout}": 1,
		"gojinn_function_request_bytes_total{f}":      30,
		"gojinn_function_response_bytes_total{f}":     6,
		"gojinn_function_response_bytes_total{g}":     3,
		"gojinn_function_cpu_seconds_total{f}":        0.002,
		"gojinn_edge_requests_total{200/h3}":          2,
		"gojinn_edge_requests_total{200/h1}":          1,
		"gojinn_edge_requests_total{404/h1}":          1,
		"gojinn_edge_requests_total{503/h2}":          1,
		"gojinn_edge_requests_total{200/h2}":          0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// namedInvoker answers 200 for any path but /fail, which fails as a
// timeout would.
type namedInvoker struct{}

func (namedInvoker) Invoke(_ context.Context, _ string, req *protocol.Request) (*runtime.Result, error) {
	if req.Path == "/fail" {
		return nil, fmt.Errorf("wrapped: %w", runtime.ErrTimeout)
	}
	return &runtime.Result{Response: &protocol.Response{Status: http.StatusOK, Body: []byte("ok")}, CPUTime: time.Millisecond}, nil
}

// serve sends one request for path to function through a Handler counting
// into m.
func serve(t *testing.T, m *Metrics, function, path string) {
	t.Helper()
	h := &Handler{Invoker: namedInvoker{}, Function: function, Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "http://a.example"+path, strings.NewReader("body")))
}

// seriesOf returns, per metric name, how many series reg has with
// function=name.
func seriesOf(t *testing.T, reg *prometheus.Registry, name string) map[string]int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, mf := range families {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "function" && l.GetValue() == name {
					n[mf.GetName()]++
				}
			}
		}
	}
	return n
}

// functionSeries are the edge's series with a function label.
var functionSeries = []string{
	"gojinn_invocations_total", "gojinn_function_duration_seconds", "gojinn_function_request_bytes_total",
	"gojinn_function_response_bytes_total", "gojinn_function_cpu_seconds_total",
}

// A removed function's series go, every one of them and only its own; if
// the name is deployed again, its successes count into series a scrape
// sees (the cache of the common case was dropped with the series).
func TestForgetFunction(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"gone", "kept"} {
		serve(t, m, fn, "/")
		serve(t, m, fn, "/fail")
	}
	for _, fn := range []string{"gone", "kept"} {
		have := seriesOf(t, reg, fn)
		for _, name := range functionSeries {
			if have[name] == 0 {
				t.Fatalf("before: %s has no series of %s: %v", name, fn, have)
			}
		}
	}

	m.ForgetFunction("gone")
	if have := seriesOf(t, reg, "gone"); len(have) != 0 {
		t.Errorf("series of the forgotten function remain: %v", have)
	}
	if have := seriesOf(t, reg, "kept"); len(have) != len(functionSeries) {
		t.Errorf("the other function's series went too; left: %v", have)
	}
	if got := gatherValue(t, reg, "gojinn_edge_requests_total", "200", "h1"); got != 2 {
		t.Errorf("requests answered 200 = %v after the forget, want 2: they are not the function's", got)
	}

	serve(t, m, "gone", "/") // deployed again
	if got := gatherValue(t, reg, "gojinn_invocations_total", "gone", OutcomeOK); got != 1 {
		t.Errorf("successes of the redeployed function = %v, want 1", got)
	}
}

// Prune forgets every function keep refuses, including what a request
// that ended after ForgetFunction counted.
func TestPruneFunctions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"a", "b", "c"} {
		serve(t, m, fn, "/")
	}
	m.ForgetFunction("b")
	serve(t, m, "b", "/fail") // a late request of the removed function
	var asked []string
	m.Prune(func(fn string) bool {
		asked = append(asked, fn)
		return fn == "a"
	})
	if len(asked) != 3 {
		t.Errorf("keep was asked about %v, want a, b and c once each", asked)
	}
	for fn, want := range map[string]int{"a": len(functionSeries), "b": 0, "c": 0} {
		if have := seriesOf(t, reg, fn); len(have) != want {
			t.Errorf("after Prune keeping a, %s has series in %v, want %d families", fn, have, want)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.ForgetFunction("a")
	nilMetrics.Prune(func(string) bool { return false })
}

// Forgetting a function while its first requests are counted never
// leaves the cache of the common case holding series the registry
// dropped: later successes would count there, unseen.
func TestForgetFunctionRacesCounting(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ok := &runtime.Result{Response: &protocol.Response{}}
	for round := range 5000 {
		var wg sync.WaitGroup
		for range 8 { // each misses the cache, which the forget empties
			wg.Go(func() { m.invocation("f", nil, time.Millisecond, 0, ok) })
		}
		m.ForgetFunction("f")
		wg.Wait()
		before := max(gatherValue(t, reg, "gojinn_invocations_total", "f", OutcomeOK), 0)
		m.invocation("f", nil, time.Millisecond, 0, ok)
		if got := gatherValue(t, reg, "gojinn_invocations_total", "f", OutcomeOK); got != before+1 {
			t.Fatalf("round %d: a success took the count from %v to %v: it went to series no scrape sees", round, before, got)
		}
	}
}

// gatherValue is the value of the counter (or a histogram's sample count)
// of name whose label values are exactly values, in label-name order; -1
// when there is none.
func gatherValue(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) != len(values) {
				continue
			}
			for i, l := range s.GetLabel() {
				if l.GetValue() != values[i] {
					continue series
				}
			}
			if s.GetHistogram() != nil {
				return float64(s.GetHistogram().GetSampleCount())
			}
			return s.GetCounter().GetValue()
		}
	}
	return -1
}
