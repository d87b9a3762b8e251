package promlabel

import (
	"maps"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValues(t *testing.T) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"function", "outcome"})
	c.WithLabelValues("a", "ok").Inc()
	c.WithLabelValues("a", "error").Inc()
	c.WithLabelValues("b", "ok").Inc()
	got := map[string]struct{}{"kept": {}}
	Values(c.MetricVec, "function", got)
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"a", "b", "kept"}) {
		t.Fatalf("function values: %v", names)
	}
	outcomes := map[string]struct{}{}
	Values(c.MetricVec, "outcome", outcomes)
	if len(outcomes) != 2 {
		t.Fatalf("outcome values: %v", outcomes)
	}
}
