package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// TestClusterKV runs the KV store on three voters: writes on the leader
// replicate to followers' local reads; followers refuse linearizable reads
// and writes (until forwarding); when the leader dies, the new leader's
// expiry loop takes over purging.
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
		if _, err := n.store.KVGet(ctx, "app", "k", ConsistencyLinearizable); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("linearizable read on a follower: %v", err)
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
