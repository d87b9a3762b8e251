package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gojinn/gojinn/storage"
)

// TestKVBatcherCoalesces writes from many goroutines at once on a
// three-voter cluster: the writes share Raft entries, each caller gets its
// own result (compare-and-set conflicts fail alone, in the same batches as
// successes), every node reaches the same state, and a key's versions
// strictly increase even when its writes queue together.
func TestKVBatcherCoalesces(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	s := leader.store
	ctx := testCtx(t)
	before := s.node.raft.LastIndex()

	const writers, rounds = 64, 20
	type result struct {
		version uint64
		err     error
	}
	results := make([][]result, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				var v uint64
				var err error
				switch w % 4 {
				case 0: // conflicts: the key never exists at version 99
					v, err = s.KVCAS(ctx, "batch", fmt.Sprintf("w%d-%d", w, i), []byte("x"), 99, 0)
				case 1: // everyone writes the same key
					v, err = s.KVPut(ctx, "batch", "shared", []byte(fmt.Sprintf("w%d-%d", w, i)), KVWriteOptions{})
				default:
					v, err = s.KVPut(ctx, "batch", fmt.Sprintf("w%d-%d", w, i), []byte("v"), KVWriteOptions{})
				}
				results[w] = append(results[w], result{v, err})
			}
		})
	}
	wg.Wait()

	shared := map[uint64]bool{}
	for w, rs := range results {
		for i, r := range rs {
			switch w % 4 {
			case 0:
				var ce *storage.KVConflictError
				if !errors.As(r.err, &ce) || ce.Expected != 99 || ce.Current != 0 {
					t.Fatalf("writer %d round %d: want a conflict, got %d, %v", w, i, r.version, r.err)
				}
			case 1:
				if r.err != nil || shared[r.version] {
					t.Fatalf("writer %d round %d on the shared key: version %d (seen: %v), %v", w, i, r.version, shared[r.version], r.err)
				}
				shared[r.version] = true
			default:
				if r.err != nil || r.version <= before {
					t.Fatalf("writer %d round %d: %d, %v", w, i, r.version, r.err)
				}
				if i > 0 && r.version <= rs[i-1].version {
					t.Fatalf("writer %d: version %d after %d", w, r.version, rs[i-1].version)
				}
			}
		}
	}
	writes := uint64(writers * rounds)
	entries := s.node.raft.LastIndex() - before
	m := &s.node.kvMetrics
	if m.batchSum.Load() != writes {
		t.Fatalf("batches hold %d commands, want %d", m.batchSum.Load(), writes)
	}
	if entries >= writes {
		t.Fatalf("%d writes took %d Raft entries: nothing was batched", writes, entries)
	}
	t.Logf("%d writes in %d Raft entries", writes, entries)
	if e, err := s.KVGet(ctx, "batch", "shared", ConsistencyLinearizable); err != nil || !shared[e.Version] {
		t.Fatalf("shared key: %+v, %v", e, err)
	}
	want := encodeState(t, s.State())
	for _, n := range h.nodes {
		waitFor(t, 10*time.Second, "every node to apply the batches", func() bool {
			return encodeState(t, n.store.State()) == want
		})
	}
}

// TestKVBatcherClose closes a node while writers keep the batcher busy:
// every caller of Node.Apply returns (its result or ErrUnavailable),
// none hangs, and later writes fail at once. (Store.apply would retry
// ErrUnavailable until its deadline; Node.Apply is the batcher's caller.)
func TestKVBatcherClose(t *testing.T) {
	s, err := OpenStore(testCtx(t), inmemConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	n := s.Node()
	ctx := context.Background() // no deadline: only the node can end a write
	put := func(key string) error {
		b, err := storage.EncodeKVCommand(storage.KVCommand{Op: storage.OpKVPut, Namespace: "close", Key: key, Value: []byte("v"), Now: time.Now()})
		if err != nil {
			t.Error(err)
			return nil
		}
		_, err = n.Apply(ctx, b)
		return err
	}
	const writers = 64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	started := make(chan struct{}, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				err := put(fmt.Sprintf("w%d-%d", w, i))
				if i == 0 {
					started <- struct{}{}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range writers {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writers still wait 10 s after Close")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a writer failed with %v, want ErrUnavailable", err)
		}
	}
	if err := put("late"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write after Close: %v", err)
	}
}

// TestKVMetrics scrapes a registry holding the node's Collector over HTTP
// and parses the exposition: operations by op and result, batch sizes.
func TestKVMetrics(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	v, err := s.KVPut(ctx, "m", "k", []byte("v"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVCAS(ctx, "m", "k", []byte("w"), v, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVCAS(ctx, "m", "k", []byte("x"), v, 0); !errors.Is(err, storage.ErrKVConflict) {
		t.Fatal(err)
	}
	if _, err := s.KVPut(ctx, "m", "", []byte("v"), KVWriteOptions{}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := s.KVPut(ctx, "m", "big", make([]byte, storage.DefaultKVMaxValueBytes+1), KVWriteOptions{}); !errors.Is(err, storage.ErrKVTooLarge) {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.KVGet(ctx, "m", "k", ConsistencyLocal); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.KVGet(ctx, "m", "nope", ConsistencyLocal); !errors.Is(err, storage.ErrKVNotFound) {
		t.Fatal(err)
	}
	if _, err := s.KVList(ctx, "m", storage.KVListOptions{}, ConsistencyLocal); err != nil {
		t.Fatal(err)
	}
	if err := s.KVDelete(ctx, "m", "k", KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.KVPut(cctx, "m", "k", []byte("v"), KVWriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := s.KVShare(ctx, "m", []string{"other"}); err != nil { // not counted
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s.Node(), nil, nil))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}

	ops := families["gojinn_kv_operations_total"]
	if ops == nil || ops.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("no gojinn_kv_operations_total counter: %v", ops)
	}
	got := map[string]float64{}
	for _, m := range ops.Metric {
		l := map[string]string{}
		for _, p := range m.Label {
			l[p.GetName()] = p.GetValue()
		}
		if len(l) != 2 {
			t.Fatalf("labels %v, want op and result only", l)
		}
		got[l["op"]+"/"+l["result"]] = m.GetCounter().GetValue()
	}
	want := map[string]float64{
		"get/ok": 2, "get/not_found": 1, "list/ok": 1, "put/ok": 1, "put/invalid": 1, "put/too_large": 1,
		"put/unavailable": 1, "cas/ok": 1, "cas/conflict": 1, "delete/ok": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			t.Errorf("unexpected series %s = %v", k, v)
		}
	}

	hist := families["gojinn_kv_batch_size"]
	if hist == nil || hist.GetType() != dto.MetricType_HISTOGRAM || len(hist.Metric) != 1 {
		t.Fatalf("no gojinn_kv_batch_size histogram: %v", hist)
	}
	hm := hist.Metric[0].GetHistogram()
	// The put, the two CAS, the delete and the share went to Raft, one at a
	// time; the rest failed before proposing.
	if hm.GetSampleCount() != 5 || hm.GetSampleSum() != 5 {
		t.Fatalf("batch histogram count %d sum %v, want 5 batches of 1", hm.GetSampleCount(), hm.GetSampleSum())
	}
	if b := hm.Bucket[0]; b.GetUpperBound() != 1 || b.GetCumulativeCount() != 5 {
		t.Fatalf("first bucket %v", b)
	}
	if last := kvBatchBuckets[len(kvBatchBuckets)-1]; last < maxBatchCommands {
		t.Fatalf("the largest bucket %v is below the largest batch %d", last, maxBatchCommands)
	}
}

// TestKVLinearizableBatched checks, with Porcupine, a history where many
// clients write a few keys on the leader at once, so most writes share
// Raft entries and writes of one key are split across them, and
// linearizable reads run in between.
func TestKVLinearizableBatched(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	s := h.waitLeader().store
	var (
		mu      sync.Mutex
		history []porcupine.Operation
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	keys := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for c := range 24 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := keys[(c+i)%len(keys)]
				op := porcupine.Operation{ClientId: c, Call: now()}
				if c%3 != 0 {
					value := fmt.Sprintf("c%d-%d", c, i)
					_, err := s.KVPut(ctx, "lin", key, []byte(value), KVWriteOptions{})
					op.Input, op.Output, op.Return = kvInput{put: true, key: key, value: value}, "", now()
					if err != nil {
						op.Return = math.MaxInt64 // may still apply
					}
				} else {
					e, err := s.KVGet(ctx, "lin", key, ConsistencyLinearizable)
					if err != nil && !errors.Is(err, storage.ErrKVNotFound) {
						continue // a failed read has no effect
					}
					op.Input, op.Output, op.Return = kvInput{key: key}, string(e.Value), now()
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	count, cmds := s.node.kvMetrics.batches()
	t.Logf("%d operations; %d writes in %d Raft entries", len(history), cmds, count)
	if cmds < 2*count {
		t.Fatalf("%d writes in %d entries: too little batching to check anything", cmds, count)
	}
	if res := porcupine.CheckOperationsTimeout(kvModel, history, 60*time.Second); res != porcupine.Ok {
		t.Fatalf("history is not linearizable (result %v)", res)
	}
}
