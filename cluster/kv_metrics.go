package cluster

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/gojinn/gojinn/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// KV operations and results as counted for gojinn_kv_operations_total.
// The label values are these fixed words, never namespaces or keys, so
// the series stay bounded (5 ops x 9 results).
const (
	kvOpGet = iota
	kvOpPut
	kvOpDelete
	kvOpList
	kvOpCAS // a put with an expected version
	kvOpCount
)

var kvOpLabels = [kvOpCount]string{"get", "put", "delete", "list", "cas"}

const (
	kvResOK = iota
	kvResNotFound
	kvResConflict
	kvResQuota
	kvResTooLarge
	kvResInvalid
	kvResForbidden
	kvResUnavailable // no leader, node closing, timeout, cancelled
	kvResError       // anything else
	kvResCount
)

var kvResultLabels = [kvResCount]string{"ok", "not_found", "conflict", "quota", "too_large", "invalid", "forbidden", "unavailable", "error"}

// kvBatchBuckets are the upper bounds of gojinn_kv_batch_size.
var kvBatchBuckets = [...]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// kvMetrics counts KV operations and apply batch sizes with atomics; the
// Collector reads them at scrape time. It lives on the Node (which the
// Collector is built from) so no extra wiring is needed; the Store
// counts its operations into its node's.
type kvMetrics struct {
	ops [kvOpCount][kvResCount]atomic.Uint64

	batchBuckets [len(kvBatchBuckets)]atomic.Uint64 // not cumulative
	batchSum     atomic.Uint64
}

// countOp records one operation's outcome.
func (m *kvMetrics) countOp(op int, err error) {
	m.ops[op][kvResult(err)].Add(1)
}

// kvResult classifies an error returned by the Store's KV methods.
func kvResult(err error) int {
	switch {
	case err == nil:
		return kvResOK
	case errors.Is(err, storage.ErrKVNotFound):
		return kvResNotFound
	case errors.Is(err, storage.ErrKVConflict):
		return kvResConflict
	case errors.Is(err, storage.ErrKVQuota):
		return kvResQuota
	case errors.Is(err, storage.ErrKVTooLarge):
		return kvResTooLarge
	case errors.Is(err, storage.ErrInvalid):
		return kvResInvalid
	case errors.Is(err, storage.ErrKVForbidden):
		return kvResForbidden
	case unavailable(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return kvResUnavailable
	}
	return kvResError
}

// observeBatch records one proposed batch of n commands.
func (m *kvMetrics) observeBatch(n int) {
	for i, ub := range kvBatchBuckets {
		if float64(n) <= ub {
			m.batchBuckets[i].Add(1)
			break
		}
	}
	m.batchSum.Add(uint64(n))
}

// batches returns how many batches were proposed and the commands they
// held.
func (m *kvMetrics) batches() (count, commands uint64) {
	for i := range m.batchBuckets {
		count += m.batchBuckets[i].Load()
	}
	return count, m.batchSum.Load()
}

// kvDescs are the KV series' descriptions.
type kvDescs struct {
	ops, batch *prometheus.Desc
}

func newKVDescs() kvDescs {
	return kvDescs{
		ops: prometheus.NewDesc("gojinn_kv_operations_total",
			"KV operations through this node's store (guest host calls and the admin API) by operation and result.",
			[]string{"op", "result"}, nil),
		batch: prometheus.NewDesc("gojinn_kv_batch_size",
			"KV commands per Raft entry proposed by this node's apply batcher (1: proposed alone).", nil, nil),
	}
}

// collect sends m's series. Every op's "ok" series is always present, so
// a rate starts from zero; other results appear once they happen.
func (m *kvMetrics) collect(d kvDescs, ch chan<- prometheus.Metric) {
	for op := range kvOpCount {
		for res := range kvResCount {
			v := m.ops[op][res].Load()
			if v == 0 && res != kvResOK {
				continue
			}
			ch <- prometheus.MustNewConstMetric(d.ops, prometheus.CounterValue, float64(v), kvOpLabels[op], kvResultLabels[res])
		}
	}
	// The count is the buckets' total (every batch falls in one: a batch
	// holds at most maxBatchCommands), so the two always agree.
	sum := m.batchSum.Load()
	buckets := make(map[float64]uint64, len(kvBatchBuckets))
	var cum uint64
	for i, ub := range kvBatchBuckets {
		cum += m.batchBuckets[i].Load()
		buckets[ub] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d.batch, cum, float64(sum), buckets)
}
