package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gojinn/gojinn/storage"
)

// TestStoreKV runs put, get, CAS, delete and list through a real
// one-voter Raft node.
func TestStoreKV(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)

	v1, err := s.KVPut(ctx, "hello", "config/greeting", []byte("hi"), KVWriteOptions{})
	if err != nil || v1 == 0 {
		t.Fatalf("put: %d, %v", v1, err)
	}
	if v1 != s.Node().raft.LastIndex() {
		t.Fatalf("version %d is not the entry's Raft index %d", v1, s.Node().raft.LastIndex())
	}
	for _, c := range []Consistency{"", ConsistencyLocal, ConsistencyLinearizable} {
		e, err := s.KVGet(ctx, "hello", "config/greeting", c)
		if err != nil || string(e.Value) != "hi" || e.Version != v1 {
			t.Fatalf("get (%q): %+v, %v", c, e, err)
		}
	}
	if _, err := s.KVGet(ctx, "hello", "k", "eventual"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("unknown consistency: %v", err)
	}
	if _, err := s.KVGet(ctx, "other", "config/greeting", ConsistencyLocal); !errors.Is(err, storage.ErrKVNotFound) {
		t.Fatalf("another namespace sees the key: %v", err)
	}

	// Compare-and-set.
	v2, err := s.KVCAS(ctx, "hello", "config/greeting", []byte("hello"), v1, 0)
	if err != nil || v2 <= v1 {
		t.Fatalf("cas at the current version: %d, %v", v2, err)
	}
	_, err = s.KVCAS(ctx, "hello", "config/greeting", []byte("stale"), v1, 0)
	var ce *storage.KVConflictError
	if !errors.As(err, &ce) || ce.Current != v2 || ce.Expected != v1 {
		t.Fatalf("cas at a stale version: %v", err)
	}
	if _, err := s.KVCAS(ctx, "hello", "config/greeting", []byte("x"), 0, 0); !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("create-only over an existing key: %v", err)
	}
	if _, err := s.KVCAS(ctx, "hello", "lock", []byte("me"), 0, time.Minute); err != nil {
		t.Fatalf("create-only of a new key: %v", err)
	}
	if e, err := s.KVGet(ctx, "hello", "lock", ""); err != nil || e.ExpiresAt.IsZero() || time.Until(e.ExpiresAt) > time.Minute {
		t.Fatalf("ttl key: %+v, %v", e, err)
	}
	// A key that can never be stored is invalid to read too, not absent.
	for _, bad := range []string{"", "a\x00b"} {
		if _, err := s.KVGet(ctx, "hello", bad, ""); !errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrKVNotFound) {
			t.Fatalf("get of key %q: %v, want invalid", bad, err)
		}
	}

	// List with a prefix and pages.
	for i := range 5 {
		if _, err := s.KVPut(ctx, "hello", fmt.Sprintf("items/%d", i), []byte{byte(i)}, KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.KVList(ctx, "hello", storage.KVListOptions{Prefix: "items/", Limit: 3}, ConsistencyLinearizable)
	if err != nil || len(page.Entries) != 3 || !page.More || page.Entries[2].Key != "items/2" {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	page, err = s.KVList(ctx, "hello", storage.KVListOptions{Prefix: "items/", Limit: 3, After: "items/2"}, "")
	if err != nil || len(page.Entries) != 2 || page.More || page.Entries[1].Key != "items/4" {
		t.Fatalf("second page: %+v, %v", page, err)
	}

	// Delete, conditional delete, and deleting what is gone.
	if err := s.KVDelete(ctx, "hello", "items/0", KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVDelete(ctx, "hello", "items/0", KVWriteOptions{}); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	stale := v1
	if err := s.KVDelete(ctx, "hello", "config/greeting", KVWriteOptions{CAS: &stale}); !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("delete at a stale version: %v", err)
	}
	if err := s.KVDelete(ctx, "hello", "config/greeting", KVWriteOptions{CAS: &v2}); err != nil {
		t.Fatalf("delete at the current version: %v", err)
	}
	if _, err := s.KVGet(ctx, "hello", "config/greeting", ConsistencyLinearizable); !errors.Is(err, storage.ErrKVNotFound) {
		t.Fatalf("get after delete: %v", err)
	}

	// Sharing.
	if err := s.KVCheckAccess("worker", "hello"); !errors.Is(err, storage.ErrKVForbidden) {
		t.Fatalf("worker using hello before sharing: %v", err)
	}
	if err := s.KVShare(ctx, "hello", []string{"worker"}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVCheckAccess("worker", "hello"); err != nil {
		t.Fatalf("worker using hello after sharing: %v", err)
	}
	if info := s.KVNamespace("hello"); len(info.Share) != 1 || info.Keys != 5 {
		t.Fatalf("namespace: %+v", info)
	}
	// KV writes leave the function registry's index alone.
	if s.State().Index() != 0 {
		t.Fatalf("registry index %d after KV writes only", s.State().Index())
	}
}

func TestStoreKVLimits(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	if err := s.ConfigureKV(KVConfig{Limits: storage.KVLimits{MaxKeyBytes: 8, MaxValueBytes: 4, MaxKeys: 2}}); err != nil {
		t.Fatal(err)
	}
	if got := s.KVLimits(); got.MaxKeyBytes != 8 || got.MaxValueBytes != 4 || got.MaxKeys != 2 {
		t.Fatalf("limits %+v", got)
	}
	for _, tc := range []struct {
		name       string
		ns, key    string
		value      string
		opts       KVWriteOptions
		want       error
		msgContain string
	}{
		{"key too long", "a", "123456789", "v", KVWriteOptions{}, storage.ErrInvalid, "more than the limit of 8"},
		{"empty key", "a", "", "v", KVWriteOptions{}, storage.ErrInvalid, "empty"},
		{"nul", "a", "a\x00", "v", KVWriteOptions{}, storage.ErrInvalid, "NUL"},
		{"value too large", "a", "k", "12345", KVWriteOptions{}, storage.ErrKVTooLarge, "more than the limit of 4"},
		{"bad namespace", "A", "k", "v", KVWriteOptions{}, storage.ErrInvalid, "namespace"},
		{"negative ttl", "a", "k", "v", KVWriteOptions{TTL: -time.Second}, storage.ErrInvalid, "ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.KVPut(ctx, tc.ns, tc.key, []byte(tc.value), tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msgContain) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msgContain)
			}
		})
	}
	for _, k := range []string{"k1", "k2"} {
		if _, err := s.KVPut(ctx, "a", k, []byte("v"), KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.KVPut(ctx, "a", "k3", []byte("v"), KVWriteOptions{}); !errors.Is(err, storage.ErrKVQuota) {
		t.Fatalf("third key over a quota of 2: %v", err)
	}
	if _, err := s.KVPut(ctx, "b", "k3", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatalf("another namespace has its own quota: %v", err)
	}
	if err := s.ConfigureKV(KVConfig{ExpireInterval: time.Microsecond}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("1µs interval: %v", err)
	}
	if err := s.ConfigureKV(KVConfig{Limits: storage.KVLimits{MaxKeyBytes: storage.KVKeyBytesCeiling + 1}}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("key limit over the ceiling: %v", err)
	}
}

// TestStoreKVExpiryLoop checks the leader purges expired keys on its own,
// and that reads hide them before the purge.
func TestStoreKVExpiryLoop(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	// A long interval first: reads must hide the key without a purge.
	if err := s.ConfigureKV(KVConfig{ExpireInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVPut(ctx, "a", "short", []byte("v"), KVWriteOptions{TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVPut(ctx, "a", "keep", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the key to expire for readers", func() bool {
		_, err := s.KVGet(ctx, "a", "short", ConsistencyLocal)
		return errors.Is(err, storage.ErrKVNotFound)
	})
	if n := s.KVNamespace("a").Keys; n != 2 {
		t.Fatalf("%d keys stored before any purge, want 2", n)
	}
	// A short interval: the loop purges it.
	if err := s.ConfigureKV(KVConfig{ExpireInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the leader to purge the expired key", func() bool {
		return s.KVNamespace("a").Keys == 1
	})
	if _, err := s.KVGet(ctx, "a", "keep", ConsistencyLocal); err != nil {
		t.Fatalf("the purge took a live key: %v", err)
	}
	// Nothing expired: the loop proposes nothing (the log does not grow).
	last := s.Node().raft.LastIndex()
	lastApplied := s.Node().raft.AppliedIndex()
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if s.Node().raft.LastIndex() != last {
			t.Fatalf("the loop proposed with nothing to purge: index %d -> %d (applied %d)", last, s.Node().raft.LastIndex(), lastApplied)
		}
		time.Sleep(10 * time.Millisecond) // polling interval while proving an absence
	}
	// Close stops the loop and waits for it (stopCh is cleared only after
	// doneCh closed); a later ConfigureKV does not restart it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureKV(KVConfig{}); err != nil {
		t.Fatalf("ConfigureKV after Close: %v", err)
	}
	if s.kv.stopCh != nil {
		t.Fatal("ConfigureKV after Close started a loop")
	}
}

// TestStoreKVFollower makes the only node lose its quorum (a second voter
// that never answers), so it steps down: local reads still work, while
// linearizable reads and writes answer ErrNotLeader.
func TestStoreKVFollower(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	if _, err := s.KVPut(ctx, "a", "k", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The configuration change takes effect when appended; it can never
	// commit, so its future times out.
	_ = s.Node().raft.AddVoter("ghost", raft.ServerAddress("ghost"), 0, 200*time.Millisecond).Error()
	waitFor(t, 10*time.Second, "the node to step down", func() bool { return !s.Node().IsLeader() })

	if e, err := s.KVGet(ctx, "a", "k", ConsistencyLocal); err != nil || !bytes.Equal(e.Value, []byte("v")) {
		t.Fatalf("local read on a follower: %+v, %v", e, err)
	}
	_, err := s.KVGet(ctx, "a", "k", ConsistencyLinearizable)
	if !errors.Is(err, ErrNotLeader) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("linearizable read on a follower: %v", err)
	}
	if _, err := s.KVList(ctx, "a", storage.KVListOptions{}, ConsistencyLinearizable); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("linearizable list on a follower: %v", err)
	}
	if _, err := s.KVPut(ctx, "a", "k2", []byte("v"), KVWriteOptions{}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write on a follower: %v", err)
	}
}

// TestStoreKVSnapshotRestart writes keys, snapshots, reopens from the
// snapshot and finds them, versions and expiries included.
func TestStoreKVSnapshotRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := inmemConfig(t, dir)
	cfg.TrailingLogs = 1
	s := openStore(t, cfg)
	ctx := testCtx(t)
	v, err := s.KVPut(ctx, "a", "k", []byte("snapshotted"), KVWriteOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KVShare(ctx, "a", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVPut(ctx, "a", "after", []byte("from the log"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want, _ := s.KVGet(ctx, "a", "k", "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, inmemConfig(t, dir))
	e, err := s2.KVGet(ctx, "a", "k", "")
	if err != nil || string(e.Value) != "snapshotted" || e.Version != v || !e.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("after restart: %+v, %v (want version %d, expiry %v)", e, err, v, want.ExpiresAt)
	}
	if e, err := s2.KVGet(ctx, "a", "after", ""); err != nil || string(e.Value) != "from the log" {
		t.Fatalf("entry after the snapshot: %+v, %v", e, err)
	}
	if err := s2.KVCheckAccess("b", "a"); err != nil {
		t.Fatalf("share list after restart: %v", err)
	}
}
