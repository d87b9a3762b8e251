// Package promlabel reads label values back from Prometheus metric
// vectors, for code that deletes the series of things that went away (the
// edge's and the runtime's per-function series).
package promlabel

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Values adds to into the values label takes in v's series.
func Values(v *prometheus.MetricVec, label string, into map[string]struct{}) {
	ch := make(chan prometheus.Metric)
	go func() { // ends when Collect returns: the loop below drains ch
		v.Collect(ch)
		close(ch)
	}()
	for s := range ch {
		var d dto.Metric
		if s.Write(&d) != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == label {
				into[l.GetValue()] = struct{}{}
			}
		}
	}
}
