package loadgen

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: 64 sub-buckets per
// power of two, so a percentile is off by at most 1/64 (~1.6%) while the
// memory stays fixed however long the run is.
type histogram struct {
	counts [histExps * histSubs]int64
	total  int64
}

const (
	histSubBits = 6
	histSubs    = 1 << histSubBits
	histExps    = 64 - histSubBits + 1
)

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histSubs {
		return int(v) // exact below 64 ns
	}
	exp := bits.Len64(v) - histSubBits // >= 1
	sub := int(v>>(exp-1)) - histSubs  // top bits after the leading one
	return exp*histSubs + sub
}

// histUpper is the largest duration that falls into bucket i.
func histUpper(i int) time.Duration {
	exp, sub := i/histSubs, i%histSubs
	if exp == 0 {
		return time.Duration(sub)
	}
	lo := uint64(histSubs+sub) << (exp - 1)
	return time.Duration(lo + 1<<(exp-1) - 1)
}

func (h *histogram) record(d time.Duration) {
	h.counts[histIndex(d)]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// percentile returns the upper bound of the bucket holding the q-th
// quantile (0 < q <= 1), or 0 for an empty histogram.
func (h *histogram) percentile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return histUpper(i)
		}
	}
	return histUpper(len(h.counts) - 1)
}
