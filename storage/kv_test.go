package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// kvLog applies commands to a registry at consecutive Raft indexes.
type kvLog struct {
	t    *testing.T
	r    *Registry
	next uint64
}

func newKVLog(t *testing.T) *kvLog { return &kvLog{t: t, r: NewRegistry(), next: 1} }

// apply encodes c without validation (Apply must check) and applies it.
func (l *kvLog) apply(c KVCommand) ApplyResult {
	l.t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		l.t.Fatal(err)
	}
	res := l.r.ApplyCommand(l.next, append([]byte{KVCommandTag}, b...))
	l.next++
	return res
}

// must applies c and fails on an error result.
func (l *kvLog) must(c KVCommand) ApplyResult {
	l.t.Helper()
	res := l.apply(c)
	if res.Err != nil {
		l.t.Fatalf("%s %s/%s: %v", c.Op, c.Namespace, c.Key, res.Err)
	}
	return res
}

func u64(v uint64) *uint64 { return &v }

func kvPut(ns, key, val string) KVCommand {
	return KVCommand{Op: OpKVPut, Namespace: ns, Key: key, Value: []byte(val), Now: t0}
}

func kvDel(ns, key string) KVCommand {
	return KVCommand{Op: OpKVDelete, Namespace: ns, Key: key, Now: t0}
}

func (c KVCommand) cas(v uint64) KVCommand        { c.CAS = u64(v); return c }
func (c KVCommand) at(t time.Time) KVCommand      { c.Now = t; return c }
func (c KVCommand) ttl(d time.Duration) KVCommand { c.ExpiresAt = c.Now.Add(d); return c }
func (c KVCommand) quota(n int) KVCommand         { c.MaxKeys = n; return c }
func (c KVCommand) maxBytes(n int64) KVCommand    { c.MaxBytes = n; return c }

func kvExpire(now time.Time) KVCommand { return KVCommand{Op: OpKVExpire, Now: now} }

func kvShare(ns string, fns ...string) KVCommand {
	return KVCommand{Op: OpKVShare, Namespace: ns, Share: fns, Now: t0}
}

func TestKVPutGetDelete(t *testing.T) {
	l := newKVLog(t)
	if res := l.must(kvPut("a", "k", "v1")); res.KV.Version != 1 {
		t.Fatalf("put version %d, want the Raft index 1", res.KV.Version)
	}
	l.must(kvPut("a", "other", "x"))
	if res := l.must(kvPut("a", "k", "v2")); res.KV.Version != 3 {
		t.Fatalf("overwrite version %d, want 3", res.KV.Version)
	}
	st := l.r.State()
	e, err := st.KVGet("a", "k", t0)
	if err != nil || string(e.Value) != "v2" || e.Version != 3 || !e.ExpiresAt.IsZero() || e.Key != "k" {
		t.Fatalf("get: %+v, %v", e, err)
	}
	if st.Index() != 0 {
		t.Fatalf("KV commands moved the registry index to %d", st.Index())
	}
	if res := l.must(kvDel("a", "k")); res.KV.Deleted != 1 {
		t.Fatalf("delete result %+v", res.KV)
	}
	if _, err := l.r.State().KVGet("a", "k", t0); !errors.Is(err, ErrKVNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	// Deleting a missing key is not an error, so retries are safe.
	if res := l.must(kvDel("a", "k")); res.KV.Deleted != 0 {
		t.Fatalf("second delete result %+v", res.KV)
	}
	if res := l.must(kvDel("nobody", "k")); res.KV.Deleted != 0 {
		t.Fatalf("delete in a missing namespace: %+v", res.KV)
	}
	// The old state a reader holds does not move.
	if e, err := st.KVGet("a", "k", t0); err != nil || string(e.Value) != "v2" {
		t.Fatalf("old state changed: %+v, %v", e, err)
	}
	// Empty values are values.
	l.must(kvPut("a", "empty", ""))
	if e, err := l.r.State().KVGet("a", "empty", t0); err != nil || len(e.Value) != 0 {
		t.Fatalf("empty value: %+v, %v", e, err)
	}
}

func TestKVCompareAndSet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   []KVCommand
		cmd     KVCommand
		current uint64 // want a conflict with this current version; 0 and ok: success
		ok      bool
	}{
		{name: "create when absent", cmd: kvPut("a", "k", "v").cas(0), ok: true},
		{name: "create when present", setup: []KVCommand{kvPut("a", "k", "v")}, cmd: kvPut("a", "k", "w").cas(0), current: 1},
		{name: "update at version", setup: []KVCommand{kvPut("a", "k", "v")}, cmd: kvPut("a", "k", "w").cas(1), ok: true},
		{name: "update at stale version", setup: []KVCommand{kvPut("a", "k", "v"), kvPut("a", "k", "w")}, cmd: kvPut("a", "k", "x").cas(1), current: 2},
		{name: "update when absent", cmd: kvPut("a", "k", "v").cas(7), current: 0},
		{name: "create over an expired key", setup: []KVCommand{kvPut("a", "k", "v").ttl(time.Second)}, cmd: kvPut("a", "k", "w").cas(0).at(t0.Add(time.Second)), ok: true},
		{name: "update an expired key", setup: []KVCommand{kvPut("a", "k", "v").ttl(time.Second)}, cmd: kvPut("a", "k", "w").cas(1).at(t0.Add(2 * time.Second)), current: 0},
		{name: "update a live ttl key", setup: []KVCommand{kvPut("a", "k", "v").ttl(time.Second)}, cmd: kvPut("a", "k", "w").cas(1).at(t0.Add(time.Second - 1)), ok: true},
		{name: "delete at version", setup: []KVCommand{kvPut("a", "k", "v")}, cmd: kvDel("a", "k").cas(1), ok: true},
		{name: "delete at stale version", setup: []KVCommand{kvPut("a", "k", "v"), kvPut("a", "k", "w")}, cmd: kvDel("a", "k").cas(1), current: 2},
		{name: "delete expecting absence", cmd: kvDel("a", "k").cas(0), ok: true},
		{name: "delete missing at a version", cmd: kvDel("a", "k").cas(3), current: 0},
		{name: "other namespace does not count", setup: []KVCommand{kvPut("b", "k", "v")}, cmd: kvPut("a", "k", "v").cas(0), ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newKVLog(t)
			for _, c := range tc.setup {
				l.must(c)
			}
			before := encodeKVState(t, l.r.State())
			res := l.apply(tc.cmd)
			if tc.ok {
				if res.Err != nil {
					t.Fatalf("want success, got %v", res.Err)
				}
				return
			}
			var ce *KVConflictError
			if !errors.As(res.Err, &ce) || !errors.Is(res.Err, ErrKVConflict) {
				t.Fatalf("want a conflict, got %v", res.Err)
			}
			if ce.Current != tc.current || ce.Expected != *tc.cmd.CAS || ce.Namespace != "a" || ce.Key != "k" {
				t.Fatalf("conflict %+v, want current %d", ce, tc.current)
			}
			if !strings.Contains(ce.Error(), "retry with its version") {
				t.Fatalf("message %q does not say what to do", ce.Error())
			}
			if after := encodeKVState(t, l.r.State()); after != before {
				t.Fatalf("a conflict changed the state:\n%s\n%s", before, after)
			}
		})
	}
}

func TestKVTTLFilteringAndPurge(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("a", "short", "1").ttl(time.Second))
	l.must(kvPut("a", "long", "2").ttl(time.Hour))
	l.must(kvPut("a", "forever", "3"))
	l.must(kvPut("b", "short", "4").ttl(time.Second))
	st := l.r.State()

	e, err := st.KVGet("a", "short", t0.Add(time.Second-1))
	if err != nil || !e.ExpiresAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("live ttl key: %+v, %v", e, err)
	}
	// Readers filter with their own clock; the key is still stored.
	if _, err := st.KVGet("a", "short", t0.Add(time.Second)); !errors.Is(err, ErrKVNotFound) {
		t.Fatalf("expired key: %v", err)
	}
	if got := keysOf(st.KVList("a", KVListOptions{}, t0.Add(time.Minute))); got != "forever,long" {
		t.Fatalf("list after expiry = %s", got)
	}
	if st.KVNamespace("a").Keys != 3 || !st.KVHasExpired(t0.Add(time.Second)) || st.KVHasExpired(t0) {
		t.Fatalf("before purge: %+v", st.KVNamespace("a"))
	}

	// A purge at a time before anything expired deletes nothing.
	if res := l.must(kvExpire(t0)); res.KV.Deleted != 0 {
		t.Fatalf("early purge deleted %d", res.KV.Deleted)
	}
	if res := l.must(kvExpire(t0.Add(time.Minute))); res.KV.Deleted != 2 {
		t.Fatalf("purge deleted %d, want 2", res.KV.Deleted)
	}
	st = l.r.State()
	if st.KVNamespace("a").Keys != 2 || st.KVHasExpired(t0.Add(2*time.Hour)) != true {
		t.Fatalf("after purge: %+v", st.KVNamespace("a"))
	}
	// Namespace b lost its only key and is gone.
	if info := st.KVNamespace("b"); info.Keys != 0 {
		t.Fatalf("b after purge: %+v", info)
	}
	if st.kv.Len() != 1 {
		t.Fatalf("%d namespaces, want only a", st.kv.Len())
	}
	// Overwriting a ttl key without a ttl makes it permanent.
	l.must(kvPut("a", "long", "again"))
	if l.must(kvExpire(t0.Add(48*time.Hour))).KV.Deleted != 0 || l.r.State().KVHasExpired(t0.Add(48*time.Hour)) {
		t.Fatal("a key overwritten without ttl was purged")
	}
}

func TestKVList(t *testing.T) {
	l := newKVLog(t)
	for _, k := range []string{"b", "a/1", "a/2", "a/3", "a", "a/", "ab", "a/2/x", "z"} {
		l.must(kvPut("n", k, "v:"+k))
	}
	l.must(kvPut("n", "a/0", "gone").ttl(time.Second))
	l.must(kvPut("other", "a/9", "elsewhere"))
	st := l.r.State()
	now := t0.Add(time.Minute)
	for _, tc := range []struct {
		opts KVListOptions
		want string
		more bool
	}{
		{KVListOptions{}, "a,a/,a/1,a/2,a/2/x,a/3,ab,b,z", false},
		{KVListOptions{Prefix: "a/"}, "a/,a/1,a/2,a/2/x,a/3", false},
		{KVListOptions{Prefix: "a/", Limit: 2}, "a/,a/1", true},
		{KVListOptions{Prefix: "a/", Limit: 2, After: "a/1"}, "a/2,a/2/x", true},
		{KVListOptions{Prefix: "a/", Limit: 2, After: "a/2/x"}, "a/3", false},
		{KVListOptions{Prefix: "a/", Limit: 1, After: "a/3"}, "", false},
		{KVListOptions{Prefix: "a/", After: "0"}, "a/,a/1,a/2,a/2/x,a/3", false}, // a cursor before the prefix
		{KVListOptions{Prefix: "a/", After: "b"}, "", false},                     // after the prefix
		{KVListOptions{Prefix: "zz"}, "", false},
		{KVListOptions{Limit: 9}, "a,a/,a/1,a/2,a/2/x,a/3,ab,b,z", false}, // exactly the limit
		{KVListOptions{Limit: 8}, "a,a/,a/1,a/2,a/2/x,a/3,ab,b", true},
	} {
		p := st.KVList("n", tc.opts, now)
		if got := keysOf(p); got != tc.want || p.More != tc.more {
			t.Errorf("list %+v = %q more=%v, want %q more=%v", tc.opts, got, p.More, tc.want, tc.more)
		}
	}
	// The expired key is skipped but listed before it expires.
	if got := keysOf(st.KVList("n", KVListOptions{Prefix: "a/", Limit: 1}, t0)); got != "a/" {
		t.Errorf("list at t0 = %q", got)
	}
	if got := keysOf(st.KVList("n", KVListOptions{Prefix: "a/0"}, t0)); got != "a/0" {
		t.Errorf("list of the live ttl key = %q", got)
	}
	if got := keysOf(st.KVList("missing", KVListOptions{}, now)); got != "" {
		t.Errorf("missing namespace lists %q", got)
	}
	// Paging through everything with a small limit visits every key once.
	var all []string
	opts := KVListOptions{Limit: 2}
	for {
		p := st.KVList("n", opts, now)
		for _, e := range p.Entries {
			all = append(all, e.Key)
		}
		if !p.More {
			break
		}
		opts.After = p.Entries[len(p.Entries)-1].Key
	}
	if got := strings.Join(all, ","); got != "a,a/,a/1,a/2,a/2/x,a/3,ab,b,z" {
		t.Fatalf("paged = %s", got)
	}
}

func TestKVLimits(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("a", "k1", "v").quota(2))
	l.must(kvPut("a", "k2", "v").quota(2))
	res := l.apply(kvPut("a", "k3", "v").quota(2))
	if !errors.Is(res.Err, ErrKVQuota) || !strings.Contains(res.Err.Error(), "holds 2 keys") {
		t.Fatalf("third key over a quota of 2: %v", res.Err)
	}
	// Overwriting an existing key is always allowed; other namespaces have
	// their own quota.
	l.must(kvPut("a", "k2", "w").quota(2))
	l.must(kvPut("b", "k3", "v").quota(2))
	// Expired keys count until purged.
	l.must(kvDel("a", "k2"))
	l.must(kvPut("a", "t", "v").ttl(time.Second).quota(2))
	if res := l.apply(kvPut("a", "k4", "v").quota(2).at(t0.Add(time.Hour))); !errors.Is(res.Err, ErrKVQuota) {
		t.Fatalf("quota with an expired key: %v", res.Err)
	}
	l.must(kvExpire(t0.Add(time.Hour)))
	l.must(kvPut("a", "k4", "v").quota(2))

	big := strings.Repeat("x", KVValueBytesCeiling+1)
	for _, tc := range []struct {
		name string
		cmd  KVCommand
		want error
		msg  string
	}{
		{"empty key", kvPut("a", "", "v"), ErrInvalid, "key is empty"},
		{"nul in key", kvPut("a", "a\x00b", "v"), ErrInvalid, "NUL"},
		{"key over the ceiling", kvPut("a", strings.Repeat("k", KVKeyBytesCeiling+1), "v"), ErrInvalid, "more than the limit"},
		{"value over the ceiling", kvPut("a", "k", big), ErrKVTooLarge, "more than the limit"},
		{"bad namespace", kvPut("Bad", "k", "v"), ErrInvalid, "namespace"},
		{"no time", KVCommand{Op: OpKVPut, Namespace: "a", Key: "k"}, ErrInvalid, "no now time"},
		{"expiry before 1970", kvPut("a", "k", "v").ttl(-100 * 365 * 24 * time.Hour), ErrInvalid, "outside 1970"},
		{"negative quota", kvPut("a", "k", "v").quota(-1), ErrInvalid, "negative"},
		{"delete with a value", KVCommand{Op: OpKVDelete, Namespace: "a", Key: "k", Value: []byte("v"), Now: t0}, ErrInvalid, "no value"},
		{"unknown op", KVCommand{Op: "kv_nope", Now: t0}, ErrInvalid, "unknown KV command"},
		{"share with self", kvShare("a", "a"), ErrInvalid, "own function"},
		{"share twice", kvShare("a", "b", "b"), ErrInvalid, "listed twice"},
		{"share a bad name", kvShare("a", "B"), ErrInvalid, "share[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := encodeKVState(t, l.r.State())
			res := l.apply(tc.cmd)
			if !errors.Is(res.Err, tc.want) || !strings.Contains(res.Err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", res.Err, tc.want, tc.msg)
			}
			if _, err := EncodeKVCommand(tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("EncodeKVCommand accepted it: %v", err)
			}
			if after := encodeKVState(t, l.r.State()); after != before {
				t.Fatal("a rejected command changed the state")
			}
		})
	}
	// JSON cannot carry invalid UTF-8 (it becomes U+FFFD), so only the
	// proposer sees such a key.
	if _, err := EncodeKVCommand(kvPut("a", "\xff", "v")); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8 key: %v", err)
	}
	for _, raw := range []string{"K", "Knot json", `K{"op":"kv_put"}`, `K[]`} {
		if res := l.r.ApplyCommand(l.next, []byte(raw)); !errors.Is(res.Err, ErrInvalid) {
			t.Errorf("%q: %v", raw, res.Err)
		}
	}
}

func TestKVLimitsConfig(t *testing.T) {
	if err := DefaultKVLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	if got := (KVLimits{}).WithDefaults(); got != DefaultKVLimits() {
		t.Fatalf("WithDefaults = %+v", got)
	}
	for _, l := range []KVLimits{
		{MaxKeyBytes: 0, MaxValueBytes: 1, MaxKeys: 1},
		{MaxKeyBytes: KVKeyBytesCeiling + 1, MaxValueBytes: 1, MaxKeys: 1},
		{MaxKeyBytes: 1, MaxValueBytes: KVValueBytesCeiling + 1, MaxKeys: 1},
		{MaxKeyBytes: 1, MaxValueBytes: 1, MaxKeys: 0},
	} {
		if err := l.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", l, err)
		}
	}
	if err := ValidateKVKey(strings.Repeat("k", 513), DefaultKVMaxKeyBytes); err == nil {
		t.Fatal("a 513-byte key passed the default limit")
	}
	if err := checkKVValue(DefaultKVMaxValueBytes+1, DefaultKVMaxValueBytes); !errors.Is(err, ErrKVTooLarge) {
		t.Fatalf("value over 1 MiB: %v", err)
	}
}

func TestKVNamespaceIsolationAndShare(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("a", "k", "a's"))
	l.must(kvPut("b", "k", "b's"))
	st := l.r.State()
	if e, _ := st.KVGet("a", "k", t0); string(e.Value) != "a's" {
		t.Fatalf("a/k = %q", e.Value)
	}
	if e, _ := st.KVGet("b", "k", t0); string(e.Value) != "b's" {
		t.Fatalf("b/k = %q", e.Value)
	}
	l.must(kvDel("a", "k"))
	if _, err := l.r.State().KVGet("b", "k", t0); err != nil {
		t.Fatalf("deleting a/k touched b/k: %v", err)
	}
	for _, tc := range []struct {
		fn, ns string
		ok     bool
	}{{"a", "a", true}, {"b", "a", false}, {"c", "never-written", false}, {"x", "x", true}} {
		if got := l.r.State().KVAllowed(tc.fn, tc.ns); got != tc.ok {
			t.Errorf("KVAllowed(%s, %s) = %v", tc.fn, tc.ns, got)
		}
	}
	if err := l.r.State().KVCheckAccess("b", "a"); !errors.Is(err, ErrKVForbidden) || !strings.Contains(err.Error(), "share list") {
		t.Fatalf("b using a: %v", err)
	}

	// Share a with c and b (stored sorted); a namespace may be shared
	// before it has keys, and keeps its list when its keys go.
	l.must(kvShare("a", "c", "b"))
	st = l.r.State()
	if info := st.KVNamespace("a"); !reflect.DeepEqual(info.Share, []string{"b", "c"}) || info.Keys != 0 {
		t.Fatalf("a after share: %+v", info)
	}
	if !st.KVAllowed("b", "a") || !st.KVAllowed("c", "a") || st.KVAllowed("d", "a") || st.KVAllowed("a", "b") {
		t.Fatal("share list not applied (or applied the wrong way round)")
	}
	l.must(kvPut("a", "k", "v"))
	l.must(kvShare("a", "c"))
	if st := l.r.State(); st.KVAllowed("b", "a") || !st.KVAllowed("c", "a") || st.KVNamespace("a").Keys != 1 {
		t.Fatalf("after narrowing: %+v", st.KVNamespace("a"))
	}
	// Clearing the list of a namespace without keys drops it.
	l.must(kvDel("a", "k"))
	l.must(kvShare("a"))
	if st := l.r.State(); st.kv.Len() != 1 || st.KVAllowed("c", "a") {
		t.Fatalf("after clearing: %d namespaces", st.kv.Len())
	}
}

// A namespace's share list is empty, never nil (the API's JSON shows
// [], not null), whether the namespace was never written, has keys and
// no list, had its list cleared, or came back from a snapshot.
func TestKVNamespaceShareNeverNil(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("keys", "k", "v"))
	l.must(kvPut("cleared", "k", "v"))
	l.must(kvShare("cleared", "b"))
	l.must(kvShare("cleared"))
	l.must(kvShare("shared", "b"))
	check := func(st *State, what string) {
		t.Helper()
		for _, ns := range []string{"never-written", "keys", "cleared"} {
			if info := st.KVNamespace(ns); info.Share == nil || len(info.Share) != 0 {
				t.Errorf("%s: %s share = %#v, want an empty list", what, ns, info.Share)
			}
		}
		if info := st.KVNamespace("shared"); !reflect.DeepEqual(info.Share, []string{"b"}) {
			t.Errorf("%s: shared share = %#v", what, info.Share)
		}
	}
	check(l.r.State(), "applied")
	var snap strings.Builder
	if err := l.r.State().Encode(&snap); err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(strings.NewReader(snap.String()))
	if err != nil {
		t.Fatal(err)
	}
	check(st, "restored")
}

// keysOf joins a page's keys.
func keysOf(p KVPage) string {
	keys := make([]string, len(p.Entries))
	for i, e := range p.Entries {
		keys[i] = e.Key
		if string(e.Value) == "" && e.Version == 0 {
			keys[i] += "(zero)"
		}
	}
	return strings.Join(keys, ",")
}

// encodeKVState returns st's snapshot encoding.
//
// The encoding leaves out Applied, which every applied entry advances,
// failed commands included (TestStateApplied covers it): these tests
// compare the data.
func encodeKVState(t *testing.T, st *State) string {
	t.Helper()
	data := *st
	data.applied = 0
	var b strings.Builder
	if err := data.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestKVTreeAgainstMap checks the immutable tree against a map and a sorted
// slice over a pseudo-random sequence of sets and deletes, keeping every
// intermediate tree unchanged.
func TestKVTreeAgainstMap(t *testing.T) {
	var tree kvTree[int]
	model := map[string]int{}
	type version struct {
		tree  kvTree[int]
		model map[string]int
	}
	var history []version
	x := uint32(1)
	for i := 0; i < 4000; i++ {
		x = x*1664525 + 1013904223
		key := fmt.Sprintf("k%03d", x%500)
		if x%3 == 0 {
			tree = tree.Delete(key)
			delete(model, key)
		} else {
			tree = tree.Set(key, i)
			model[key] = i
		}
		if i%400 == 0 {
			snap := make(map[string]int, len(model))
			for k, v := range model {
				snap[k] = v
			}
			history = append(history, version{tree, snap})
		}
	}
	history = append(history, version{tree, model})
	for hi, h := range history {
		if h.tree.Len() != len(h.model) {
			t.Fatalf("version %d: Len %d, want %d", hi, h.tree.Len(), len(h.model))
		}
		prev, n := "", 0
		h.tree.Ascend("", func(k string, v int) bool {
			if n > 0 && k <= prev {
				t.Fatalf("version %d: %q after %q", hi, k, prev)
			}
			if h.model[k] != v {
				t.Fatalf("version %d: %s = %d, want %d", hi, k, v, h.model[k])
			}
			prev = k
			n++
			return true
		})
		if n != len(h.model) {
			t.Fatalf("version %d: ascended %d keys, want %d", hi, n, len(h.model))
		}
		for k, v := range h.model {
			if got, ok := h.tree.Get(k); !ok || got != v {
				t.Fatalf("version %d: Get(%s) = %d %v", hi, k, got, ok)
			}
		}
		for _, from := range []string{"", "k000", "k250", "k2500", "k499", "k5", "z"} {
			var want, got []string
			for k := range h.model {
				if k >= from {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			h.tree.Ascend(from, func(k string, _ int) bool { got = append(got, k); return true })
			if !slices.Equal(got, want) {
				t.Fatalf("version %d: Ascend(%q) = %d keys, want %d", hi, from, len(got), len(want))
			}
		}
	}
}

// TestKVConcurrentReaders reads published states from several goroutines
// while KV commands apply: a state a reader holds never changes (run with
// -race).
func TestKVConcurrentReaders(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("a", "k", "0"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st := l.r.State()
				e, err := st.KVGet("a", "k", t0)
				if err != nil {
					t.Errorf("get: %v", err)
					return
				}
				n := len(st.KVList("a", KVListOptions{Limit: 1000}, t0).Entries)
				if e2, _ := st.KVGet("a", "k", t0); e2.Version != e.Version || string(e2.Value) != string(e.Value) {
					t.Errorf("a held state changed: %+v then %+v", e, e2)
					return
				}
				if n2 := len(st.KVList("a", KVListOptions{Limit: 1000}, t0).Entries); n2 != n {
					t.Errorf("a held state's listing changed: %d then %d keys", n, n2)
					return
				}
			}
		}()
	}
	for i := 1; i <= 300; i++ {
		l.must(kvPut("a", "k", fmt.Sprint(i)))
		l.must(kvPut("a", fmt.Sprintf("n%03d", i), "v"))
		if i%3 == 0 {
			l.must(kvDel("a", fmt.Sprintf("n%03d", i-1)))
		}
	}
	close(stop)
	wg.Wait()
}

// A namespace's keys and values are bounded in bytes too (every node
// holds them in memory; a guest putting 1 MiB values in a loop grew a
// node by 600 MB in one request under the key quota alone): a put that
// would grow it past MaxBytes is refused, one that does not grow it
// passes, and deletes, purges and snapshots keep the count.
func TestKVByteQuota(t *testing.T) {
	l := newKVLog(t)
	size := func() int64 { return l.r.State().KVNamespace("a").Bytes }
	l.must(kvPut("a", "k1", "vvvv").maxBytes(10)) // 2 + 4
	res := l.apply(kvPut("a", "k2", "vvv").maxBytes(10))
	if !errors.Is(res.Err, ErrKVQuota) || !strings.Contains(res.Err.Error(), "holds 6 bytes of keys and values; this put would make it 11, more than the limit of 10") {
		t.Fatalf("a put past the byte quota: %v", res.Err)
	}
	if size() != 6 {
		t.Fatalf("a refused put changed the namespace's size to %d", size())
	}
	l.must(kvPut("a", "k1", "v").maxBytes(10)) // shrinks to 3
	l.must(kvPut("a", "k2", "vvv").maxBytes(10))
	if size() != 8 {
		t.Fatalf("size %d, want 8", size())
	}
	// Over a lowered quota, a put that does not grow the namespace passes.
	l.must(kvPut("a", "k2", "vv").maxBytes(4))
	if res := l.apply(kvPut("a", "k2", "vvvv").maxBytes(4)); !errors.Is(res.Err, ErrKVQuota) {
		t.Fatalf("a growing put over a lowered quota: %v", res.Err)
	}
	l.must(kvDel("a", "k2"))
	l.must(kvPut("a", "t", "vvvvv").ttl(time.Second).maxBytes(100))
	if size() != 3+6 {
		t.Fatalf("size %d after a delete and a TTL put, want 9", size())
	}
	// A snapshot restores the count.
	r2 := NewRegistry()
	if err := r2.Restore(io.NopCloser(strings.NewReader(encodeKVState(t, l.r.State())))); err != nil {
		t.Fatal(err)
	}
	if got := r2.State().KVNamespace("a").Bytes; got != 9 {
		t.Fatalf("restored size %d, want 9", got)
	}
	l.must(kvExpire(t0.Add(time.Hour)))
	if size() != 3 {
		t.Fatalf("size %d after the purge, want 3", size())
	}
	// Without a quota in the command (entries written before it existed)
	// nothing is refused.
	l.must(kvPut("a", "big", strings.Repeat("x", 1000)))
}
