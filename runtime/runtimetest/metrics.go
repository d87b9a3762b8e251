package runtimetest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Compilations sums gojinn_compilations_total over the series of g whose
// source label is source (runtime.SourceMemory, SourceDisk or
// SourceCompiled): how often functions got compiled code that way.
func Compilations(tb testing.TB, g prometheus.Gatherer, source string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "gojinn_compilations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
