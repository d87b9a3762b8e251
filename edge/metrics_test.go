package edge

import (
	"fmt"
	"strings"
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
