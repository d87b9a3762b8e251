package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// A backup of a cluster whose log is far ahead restored into a fresh
// cluster (the documented disaster recovery): the restored state sits
// at the restore's Raft index, so new writes get versions above every
// restored one, a compare-and-set on a restored version means that
// write only, and a follower's linearizable read waits for writes after
// the restore instead of trusting the source cluster's applied index.
func TestRestoreIntoFreshClusterRebasesIndexes(t *testing.T) {
	ctx := testCtx(t)
	src := openStore(t, inmemConfig(t, t.TempDir()))
	for i := range 300 {
		if _, err := src.KVPut(ctx, "app", fmt.Sprintf("fill-%03d", i), []byte("x"), KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := src.KVPut(ctx, "app", "k", []byte("old"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srcTop := src.State().MaxIndex()
	if old < 300 || srcTop < old {
		t.Fatalf("source: key version %d, highest index %d", old, srcTop)
	}
	var backup bytes.Buffer
	if err := src.Backup(ctx, &backup, ConsistencyLinearizable); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	if err := leader.store.Restore(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	at := leader.store.State().Applied()
	if at <= srcTop || leader.store.State().Index() != at {
		t.Errorf("after the restore the leader has index %d, applied %d; want both one index above the backup's highest %d", leader.store.State().Index(), at, srcTop)
	}
	e, err := leader.store.KVGet(ctx, "app", "k", ConsistencyLinearizable)
	if err != nil || string(e.Value) != "old" || e.Version != old {
		t.Fatalf("restored key: %q version %d, %v; want %q version %d", e.Value, e.Version, err, "old", old)
	}

	// New writes follow every restored index.
	v1, err := leader.store.KVPut(ctx, "app", "k", []byte("new"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v1 <= at {
		t.Errorf("a put after the restore got version %d, not above the restore index %d (restored versions go up to %d)", v1, at, srcTop)
	}
	v2, err := leader.store.KVPut(ctx, "app", "other", []byte("new"), KVWriteOptions{})
	if err != nil || v2 <= v1 {
		t.Fatalf("second put: version %d, %v; want above %d", v2, err, v1)
	}
	// A compare-and-set on the restored version is a conflict with the
	// new one; on the new version it applies.
	_, err = leader.store.KVCAS(ctx, "app", "k", []byte("cas-old"), old, 0)
	var ce *storage.KVConflictError
	if !errors.As(err, &ce) || ce.Current != v1 {
		t.Fatalf("cas on the restored version %d: %v; want a conflict naming version %d", old, err, v1)
	}
	v3, err := leader.store.KVCAS(ctx, "app", "k", []byte("cas-new"), v1, 0)
	if err != nil || v3 <= v1 {
		t.Fatalf("cas on version %d: version %d, %v", v1, v3, err)
	}

	// Every follower installs the restore and then applies what follows.
	f := h.follower(leader)
	for _, n := range h.nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to apply version %d", n.i, v3), func() bool {
			e, err := n.store.State().KVGet("app", "k", time.Now())
			return err == nil && e.Version == v3
		})
	}

	// Cut Raft between the leader and f (f still reaches the leader's
	// peer API): the write below commits without f, and f's
	// linearizable read must not answer the value it holds.
	h.mu.Lock()
	h.inmem[leader.i].Disconnect(h.inmemAddr[f.i])
	h.inmem[f.i].Disconnect(h.inmemAddr[leader.i])
	h.mu.Unlock()
	t.Cleanup(h.Heal)
	v4, err := leader.store.KVPut(ctx, "app", "k", []byte("newest"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	e, err = f.store.KVGet(rctx, "app", "k", ConsistencyLinearizable)
	if err == nil && (string(e.Value) != "newest" || e.Version != v4) {
		t.Fatalf("a follower cut off from replication answered a linearizable read with %q version %d; the latest write is version %d", e.Value, e.Version, v4)
	}
	if err != nil && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("linearizable read on a cut-off follower: %v; want unavailable", err)
	}
}
