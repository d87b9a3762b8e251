package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// A KV write sent to a follower is forwarded to the leader, which answers
// once it applied the write; the follower learns of the commit only with
// the leader's next message. It must not answer before it applied the
// write itself, or a local read on it right after misses the write. The
// same holds for a delete, and for a compare-and-set that failed: the
// version it reports as current is readable there. Through the Store and
// through the admin API.
func TestKVFollowerReadsItsOwnWrites(t *testing.T) {
	ctx := testCtx(t)
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	for _, f := range h.nodes {
		if f == leader {
			continue
		}
		a := h.adminAPI(f, nil)
		localVersion := func(key string) (uint64, error) {
			e, err := f.store.KVGet(ctx, "app", key, ConsistencyLocal)
			return e.Version, err
		}
		for i := range 5 {
			key := fmt.Sprintf("k-%d-%d", f.i, i)
			v, err := f.store.KVPut(ctx, "app", key, []byte("v"), KVWriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := localVersion(key); err != nil || got != v {
				t.Fatalf("node %d, write %d: a local read right after a put through it answered version %d, %v; want %d", f.i, i, got, err, v)
			}
			if err := f.store.KVDelete(ctx, "app", key, KVWriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := localVersion(key); !errors.Is(err, storage.ErrKVNotFound) {
				t.Fatalf("node %d, write %d: a local read right after a delete through it answered %v; want not found", f.i, i, err)
			}

			// The leader writes; a compare-and-set through the follower
			// on the old version fails naming the new one.
			cur, err := leader.store.KVPut(ctx, "app", key, []byte("leader"), KVWriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.store.KVCAS(ctx, "app", key, []byte("stale"), 0, 0)
			var ce *storage.KVConflictError
			if !errors.As(err, &ce) || ce.Current != cur {
				t.Fatalf("create-only put of an existing key: %v; want a conflict naming version %d", err, cur)
			}
			if got, err := localVersion(key); err != nil || got != cur {
				t.Fatalf("node %d, write %d: a local read right after a failed compare-and-set naming version %d answered version %d, %v", f.i, i, cur, got, err)
			}

			// The admin API on the follower: PUT, then GET (local).
			akey := "api-" + key
			v, err = a.client.KVPut(ctx, "app", akey, []byte("api"), KVWriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			e, err := a.client.KVGet(ctx, "app", akey, KVReadOptions{})
			if err != nil || e.Version != v {
				t.Fatalf("node %d, write %d: GET right after a PUT through the follower's admin API answered version %d, %v; want %d", f.i, i, e.Version, err, v)
			}
		}
	}
}

// Forwarded KV writes wait for this node to apply them, but not forever:
// a node cut off from replication right after forwarding answers the
// committed write within the bound (the caller's deadline here), and
// logs that its reads trail the leader.
func TestKVFollowerWriteWaitIsBounded(t *testing.T) {
	ctx := testCtx(t)
	h, leader, f := threeVoters(t)
	// Raft cut between f and the leader; f still reaches the leader's
	// peer API, so its write is forwarded and commits without it.
	h.mu.Lock()
	h.inmem[leader.i].Disconnect(h.inmemAddr[f.i])
	h.inmem[f.i].Disconnect(h.inmemAddr[leader.i])
	h.mu.Unlock()
	t.Cleanup(h.Heal)
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	v, err := f.store.KVPut(wctx, "app", "k", []byte("v"), KVWriteOptions{})
	if err != nil {
		t.Fatalf("a write forwarded from a node cut off from replication: %v; want it committed", err)
	}
	if e, err := leader.store.KVGet(ctx, "app", "k", ConsistencyLinearizable); err != nil || e.Version != v {
		t.Fatalf("the leader's read of the write: version %d, %v; want %d", e.Version, err, v)
	}
}
