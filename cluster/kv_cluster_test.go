package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// TestClusterKV runs the KV store on three voters: writes on the leader
// replicate to followers' local reads; followers answer linearizable
// reads and forward writes; when the leader dies, the new leader's expiry
// loop takes over purging.
func TestClusterKV(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	ctx := testCtx(t)
	for _, n := range h.nodes {
		// The first leader never purges; any later leader purges quickly.
		interval := 10 * time.Millisecond
		if n == leader {
			interval = time.Hour
		}
		if err := n.store.ConfigureKV(KVConfig{ExpireInterval: interval}); err != nil {
			t.Fatal(err)
		}
	}

	v, err := leader.store.KVPut(ctx, "app", "k", []byte("v"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.store.KVPut(ctx, "app", "session", []byte("s"), KVWriteOptions{TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for _, n := range h.nodes {
		if n == leader {
			continue
		}
		waitFor(t, 10*time.Second, "a follower to see the write", func() bool {
			e, err := n.store.KVGet(ctx, "app", "k", ConsistencyLocal)
			return err == nil && e.Version == v
		})
		if e, err := n.store.KVGet(ctx, "app", "k", ConsistencyLinearizable); err != nil || e.Version != v {
			t.Fatalf("linearizable read on a follower: %+v, %v; want version %d", e, err, v)
		}
		// A write on a follower is forwarded to the leader.
		if _, err := n.store.KVPut(ctx, "app", "k2", []byte("v"), KVWriteOptions{}); err != nil {
			t.Fatalf("write on a follower: %v", err)
		}
		if err := n.store.KVDelete(ctx, "app", "k2", KVWriteOptions{}); err != nil {
			t.Fatalf("delete on a follower: %v", err)
		}
		// Expired keys are hidden everywhere at once, purged or not.
		waitFor(t, 5*time.Second, "the session to expire for readers", func() bool {
			_, err := n.store.KVGet(ctx, "app", "session", ConsistencyLocal)
			return errors.Is(err, storage.ErrKVNotFound)
		})
	}
	if got := leader.store.KVNamespace("app").Keys; got != 2 {
		t.Fatalf("the first leader purged (%d keys left) with an interval of an hour", got)
	}

	h.Kill(leader.i)
	next := h.waitLeader(leader)
	for _, n := range h.nodes {
		if !n.up {
			continue
		}
		waitFor(t, 15*time.Second, "the new leader's purge to reach every node", func() bool {
			return n.store.KVNamespace("app").Keys == 1
		})
	}
	if e, err := next.store.KVGet(ctx, "app", "k", ConsistencyLinearizable); err != nil || e.Version != v {
		t.Fatalf("linearizable read on the new leader: %+v, %v", e, err)
	}
}

// A linearizable read on a follower sees every write acknowledged before
// it, however far the follower's own state trails: it waits for the
// leader's read index. A follower cut off from the leader answers an
// error, never a stale value.
func TestFollowerLinearizableReads(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	ctx := testCtx(t)
	var followers []*hnode
	for _, n := range h.nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	for i := range 200 {
		value := fmt.Sprintf("v%d", i)
		v, err := leader.store.KVPut(ctx, "lin", "k", []byte(value), KVWriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f := followers[i%len(followers)]
		e, err := f.store.KVGet(ctx, "lin", "k", ConsistencyLinearizable)
		if err != nil || string(e.Value) != value || e.Version != v {
			t.Fatalf("write %d acknowledged at version %d; the follower's linearizable read then gave %q at %d, %v", i, v, e.Value, e.Version, err)
		}
	}

	cut := followers[0]
	h.Partition(cut.i)
	defer h.Heal()
	if _, err := leader.store.KVPut(ctx, "lin", "k", []byte("after"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err := cut.store.KVGet(rctx, "lin", "k", ConsistencyLinearizable)
	if err == nil {
		t.Fatalf("a partitioned follower answered a linearizable read: %q", e.Value)
	}
	if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a partitioned follower's linearizable read: %v, want unavailable", err)
	}
	// Its local read may be stale, and says nothing about the write.
	if _, err := cut.store.KVGet(ctx, "lin", "k", ConsistencyLocal); err != nil {
		t.Fatalf("local read on the partitioned follower: %v", err)
	}
}
