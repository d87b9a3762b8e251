package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// HostKV gives the runtime the store's KV with the runtime's sentinels:
// put, compare-and-set with the current version on a conflict, get,
// list pages, delete, and namespace access through the share lists.
func TestHostKV(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	h := NewHostKV(s)
	if k, v := h.Limits(); k != 512 || v != 1<<20 {
		t.Fatalf("limits %d %d", k, v)
	}
	v1, err := h.Put(ctx, "counter", "a", []byte("1"), 0, runtime.KVNoCAS)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := h.Put(ctx, "counter", "a", []byte("2"), 0, 0)
	if !errors.Is(err, runtime.ErrKVConflict) || cur != v1 {
		t.Fatalf("create-only over a key: %d %v, want the current version %d", cur, err, v1)
	}
	v2, err := h.Put(ctx, "counter", "a", []byte("2"), time.Minute, int64(v1))
	if err != nil || v2 <= v1 {
		t.Fatalf("cas: %d %v", v2, err)
	}
	if val, v, err := h.Get(ctx, "counter", "a", true); err != nil || string(val) != "2" || v != v2 {
		t.Fatalf("get: %q %d %v", val, v, err)
	}
	if _, _, err := h.Get(ctx, "counter", "nope", false); !errors.Is(err, runtime.ErrKVNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := h.Put(ctx, "counter", "", nil, 0, runtime.KVNoCAS); !errors.Is(err, runtime.ErrKVInvalid) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := h.Put(ctx, "counter", "big", make([]byte, 1<<20+1), 0, runtime.KVNoCAS); !errors.Is(err, runtime.ErrKVTooLarge) {
		t.Fatalf("big value: %v", err)
	}
	for _, k := range []string{"b", "c"} {
		if _, err := h.Put(ctx, "counter", k, nil, 0, runtime.KVNoCAS); err != nil {
			t.Fatal(err)
		}
	}
	keys, next, err := h.List(ctx, "counter", "", "", 2)
	if err != nil || len(keys) != 2 || keys[0] != "a" || next != "b" {
		t.Fatalf("page 1: %v %q %v", keys, next, err)
	}
	if keys, next, err = h.List(ctx, "counter", "", next, 2); err != nil || len(keys) != 1 || keys[0] != "c" || next != "" {
		t.Fatalf("page 2: %v %q %v", keys, next, err)
	}
	if err := h.Delete(ctx, "counter", "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Get(ctx, "counter", "a", false); !errors.Is(err, runtime.ErrKVNotFound) {
		t.Fatalf("after delete: %v", err)
	}

	if err := h.CheckAccess("counter", "counter"); err != nil {
		t.Fatalf("own namespace: %v", err)
	}
	if err := h.CheckAccess("other", "counter"); !errors.Is(err, runtime.ErrKVForbidden) {
		t.Fatalf("foreign namespace: %v", err)
	}
	if err := s.KVShare(ctx, "counter", []string{"other"}); err != nil {
		t.Fatal(err)
	}
	if err := h.CheckAccess("other", "counter"); err != nil {
		t.Fatalf("shared namespace: %v", err)
	}
}

// On a follower, a guest's put is forwarded to the leader and returns
// once the follower's own replica has it: the next local read sees it.
func TestHostKVReadsOwnWritesOnFollowers(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader := h.waitLeader()
	ctx := testCtx(t)
	for _, n := range h.nodes {
		if n == leader {
			continue
		}
		kv := NewHostKV(n.store)
		key := "k-" + n.store.Node().ID()
		version := uint64(0)
		for i := range 20 {
			v, err := kv.Put(ctx, "counter", key, []byte{byte(i)}, 0, int64(version))
			if err != nil {
				t.Fatalf("put %d on a follower: %v", i, err)
			}
			val, got, err := kv.Get(ctx, "counter", key, false)
			if err != nil || got != v || val[0] != byte(i) {
				t.Fatalf("local read after put %d: %v %d %v, want version %d", i, val, got, err, v)
			}
			version = v
		}
	}
}
