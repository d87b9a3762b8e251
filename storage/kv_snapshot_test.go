package storage

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// kvScenario is a command log mixing registry and KV commands.
func kvScenario(t *testing.T) [][]byte {
	t.Helper()
	var log [][]byte
	add := func(b []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, b)
	}
	add(EncodeCommand(deploy("hello", "1")))
	add(EncodeKVCommand(kvPut("hello", "config/greeting", "hi")))
	add(EncodeKVCommand(kvPut("hello", "session/1", "s1").ttl(time.Minute)))
	add(EncodeKVCommand(kvPut("hello", "session/2", "s2").ttl(time.Hour)))
	add(EncodeKVCommand(kvPut("worker", "queue/\u00e9t\u00e9", "\x00\xff binary")))
	add(EncodeKVCommand(kvShare("worker", "hello")))
	add(EncodeKVCommand(kvShare("shared", "hello", "worker")))
	add(EncodeCommand(deploy("hello", "2")))
	add(EncodeKVCommand(kvPut("hello", "config/greeting", "hello").cas(2)))
	add(EncodeKVCommand(kvPut("hello", "config/greeting", "stale").cas(2))) // conflict
	add(EncodeKVCommand(kvDel("worker", "missing")))
	add(EncodeKVCommand(kvExpire(t0.Add(2 * time.Minute))))
	add(EncodeKVCommand(kvPut("worker", "n", "1").quota(2)))
	add(EncodeKVCommand(kvPut("worker", "m", "1").quota(2))) // over quota
	return log
}

// TestKVDeterminism applies the same log to two registries, one of them
// restored from a snapshot halfway, and compares their snapshots byte for
// byte.
func TestKVDeterminism(t *testing.T) {
	log := kvScenario(t)
	a, b := NewRegistry(), NewRegistry()
	var resA, resB []string
	for i, e := range log {
		res := a.ApplyCommand(uint64(i+1), e)
		resA = append(resA, resultString(res))
	}
	for i, e := range log {
		if i == len(log)/2 {
			// Restart b from its own snapshot.
			var snap bytes.Buffer
			if err := b.State().Encode(&snap); err != nil {
				t.Fatal(err)
			}
			b = NewRegistry()
			if err := b.Restore(io.NopCloser(&snap)); err != nil {
				t.Fatal(err)
			}
		}
		resB = append(resB, resultString(b.ApplyCommand(uint64(i+1), e)))
	}
	if !reflect.DeepEqual(resA, resB) {
		t.Fatalf("results differ:\n%q\n%q", resA, resB)
	}
	sa, sb := encodeKVState(t, a.State()), encodeKVState(t, b.State())
	if sa != sb {
		t.Fatalf("snapshots differ:\n%s\n%s", sa, sb)
	}
	for _, want := range []string{"version conflict", "quota exceeded"} {
		if !strings.Contains(strings.Join(resA, "\n"), want) {
			t.Errorf("the scenario has no %s result: %q", want, resA)
		}
	}
	if st := a.State(); st.Index() != 8 {
		t.Fatalf("registry index %d, want 8 (the second deploy)", st.Index())
	}
}

func resultString(r ApplyResult) string {
	s, _ := json.Marshal(struct {
		V   int64
		KV  KVResult
		Err string
	}{V: r.Version.Version, KV: r.KV, Err: errString(r.Err)})
	return string(s)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return `"` + err.Error()
}

// TestKVSnapshotRoundTrip restores a snapshot with functions and KV and
// finds the same keys, versions, expiries, shares and bytes.
func TestKVSnapshotRoundTrip(t *testing.T) {
	r := NewRegistry()
	for i, e := range kvScenario(t) {
		r.ApplyCommand(uint64(i+1), e)
	}
	enc := encodeKVState(t, r.State())
	if !strings.HasPrefix(enc, `{"format":2,"index":8,"names":1,"kv_namespaces":3}`) {
		t.Fatalf("header: %s", enc[:strings.IndexByte(enc, '\n')])
	}
	r2 := NewRegistry()
	if err := r2.Restore(io.NopCloser(strings.NewReader(enc))); err != nil {
		t.Fatal(err)
	}
	if got := encodeKVState(t, r2.State()); got != enc {
		t.Fatalf("re-encoded snapshot differs:\n%s\n%s", enc, got)
	}
	st := r2.State()
	e, err := st.KVGet("worker", "queue/\u00e9t\u00e9", t0)
	if err != nil || string(e.Value) != "\x00\xff binary" || e.Version != 5 {
		t.Fatalf("binary value: %+v, %v", e, err)
	}
	e, err = st.KVGet("hello", "session/2", t0)
	if err != nil || !e.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("ttl key: %+v, %v", e, err)
	}
	if !st.KVAllowed("hello", "shared") || !st.KVAllowed("hello", "worker") || st.KVAllowed("worker", "hello") {
		t.Fatal("share lists lost")
	}
	// ttlKeys survives, so a purge still finds the key.
	if !st.KVHasExpired(t0.Add(2 * time.Hour)) {
		t.Fatal("restored state forgot its expiring keys")
	}
}

// TestRestorePreKVSnapshot restores a snapshot written by the registry
// before KV existed (format 1, frozen in testdata), then takes KV writes.
func TestRestorePreKVSnapshot(t *testing.T) {
	f, err := os.Open("testdata/upgrade/snapshot-format1-pre-kv.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	if err := r.Restore(f); err != nil {
		t.Fatalf("a format 1 snapshot does not restore: %v", err)
	}
	st := r.State()
	fn, ok := st.Function("hello")
	if !ok || fn.Active != 1 || len(fn.Versions) != 2 || st.Index() != 5 || st.Len() != 1 {
		t.Fatalf("restored registry: %+v (index %d)", fn, st.Index())
	}
	if v, _ := fn.ActiveVersion(); v.Env["GREETING"] != "hi" || v.Limits.Timeout != Duration(2*time.Second) {
		t.Fatalf("active version: %+v", v)
	}
	if st.kv.Len() != 0 {
		t.Fatal("a pre-KV snapshot restored KV namespaces")
	}
	// Version numbering survives: gone's next version is 2.
	res := r.ApplyCommand(6, mustEncode(t, deploy("gone", "x")))
	if res.Err != nil || res.Version.Version != 2 {
		t.Fatalf("redeploy of a removed name: %+v", res)
	}
	b, err := EncodeKVCommand(kvPut("hello", "k", "v"))
	if err != nil {
		t.Fatal(err)
	}
	if res := r.ApplyCommand(7, b); res.Err != nil || res.KV.Version != 7 {
		t.Fatalf("KV write after the upgrade: %+v", res)
	}
	enc := encodeKVState(t, r.State())
	if !strings.HasPrefix(enc, `{"format":2,`) {
		t.Fatalf("new snapshots are not format 2: %s", enc)
	}
}

func mustEncode(t *testing.T, c Command) []byte {
	t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKVSnapshotRejectsDamage(t *testing.T) {
	r := NewRegistry()
	for i, e := range kvScenario(t) {
		r.ApplyCommand(uint64(i+1), e)
	}
	good := encodeKVState(t, r.State())
	lines := strings.Split(strings.TrimSuffix(good, "\n"), "\n")
	for _, tc := range []struct {
		name string
		edit func([]string) []string
		msg  string
	}{
		{"truncated", func(l []string) []string { return l[:len(l)-1] }, "unexpected EOF"},
		{"extra record", func(l []string) []string { return append(l, `{"ns":"zz","keys":1}`) }, "data after"},
		{"format 1 with KV", func(l []string) []string {
			l[0] = strings.Replace(l[0], `"format":2`, `"format":1`, 1)
			return l
		}, "format 1 header counts"},
		{"format 3", func(l []string) []string {
			l[0] = strings.Replace(l[0], `"format":2`, `"format":3`, 1)
			return l
		}, "upgrade this node"},
		{"bad key", func(l []string) []string { return replaceIn(l, `"key":"config/greeting"`, `"key":""`) }, "key is empty"},
		{"version 0", func(l []string) []string { return replaceIn(l, `"version":9`, `"version":0`) }, "version 0"},
		{"keys out of order", func(l []string) []string { return replaceIn(l, `"key":"config/greeting"`, `"key":"zzz"`) }, "out of order"},
		{"empty namespace", func(l []string) []string {
			return replaceIn(l, `{"ns":"shared","keys":0,"share":["hello","worker"]}`, `{"ns":"shared","keys":0}`)
		}, "no share list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Join(tc.edit(append([]string(nil), lines...)), "\n") + "\n"
			if bad == good {
				t.Fatal("the edit changed nothing")
			}
			_, err := DecodeState(strings.NewReader(bad))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

func replaceIn(lines []string, old, repl string) []string {
	for i, l := range lines {
		if strings.Contains(l, old) {
			lines[i] = strings.Replace(l, old, repl, 1)
			return lines
		}
	}
	return lines
}

// Applied is the index of the last entry applied, of any kind: registry
// commands, KV commands and batches, failed ones included (the entry was
// applied; its result is the error). Snapshots carry it; a snapshot from
// before it existed restores it as the registry index.
func TestStateApplied(t *testing.T) {
	l := newKVLog(t)
	l.r.ApplyCommand(l.next, mustEncode(t, deploy("a", "1")))
	l.next++
	if got := l.r.State().Applied(); got != 1 {
		t.Fatalf("after a registry command at 1: Applied %d", got)
	}
	l.must(kvPut("a", "k", "v"))
	if st := l.r.State(); st.Applied() != 2 || st.Index() != 1 {
		t.Fatalf("after a KV put at 2: Applied %d, Index %d; want 2 and 1", st.Applied(), st.Index())
	}
	if res := l.apply(kvPut("a", "k", "x").cas(99)); res.Err == nil {
		t.Fatal("a put at a wrong version succeeded")
	}
	if got := l.r.State().Applied(); got != 3 {
		t.Fatalf("after a failed KV put at 3: Applied %d", got)
	}
	put, err := EncodeKVCommand(kvPut("a", "b", "v"))
	if err != nil {
		t.Fatal(err)
	}
	l.r.ApplyCommand(7, EncodeKVBatch([][]byte{put}))
	if got := l.r.State().Applied(); got != 7 {
		t.Fatalf("after a batch at 7: Applied %d", got)
	}

	var b strings.Builder
	if err := l.r.State().Encode(&b); err != nil {
		t.Fatal(err)
	}
	r2 := NewRegistry()
	if err := r2.Restore(io.NopCloser(strings.NewReader(b.String()))); err != nil {
		t.Fatal(err)
	}
	if got := r2.State().Applied(); got != 7 {
		t.Fatalf("restored Applied %d, want 7", got)
	}
	old := strings.Replace(b.String(), `,"applied":7`, "", 1)
	if old == b.String() {
		t.Fatalf("the snapshot header has no applied field: %s", b.String()[:strings.IndexByte(b.String(), '\n')])
	}
	r3 := NewRegistry()
	if err := r3.Restore(io.NopCloser(strings.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if got := r3.State().Applied(); got != 1 {
		t.Fatalf("a snapshot without applied restored Applied %d, want the registry index 1", got)
	}
}
