package storage

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// kvCodecCommands covers every op, flag and field of the binary encoding.
func kvCodecCommands() []KVCommand {
	return []KVCommand{
		kvPut("hello", "config/greeting", "hi"),
		kvPut("hello", "k", ""),
		kvPut("hello", "k", "\x00\xff binary").cas(0),
		kvPut("hello", "k", "v").cas(1<<63 + 5).ttl(time.Hour).quota(100_000),
		kvPut("hello", "k", "v").quota(100_000).maxBytes(64 << 20),
		kvPut("hello", "k", "v").maxBytes(1<<63 - 1),
		kvPut("hello", "queue/\u00e9t\u00e9", strings.Repeat("x", 300)).ttl(time.Nanosecond),
		kvDel("hello", "k"),
		kvDel("hello", "k").cas(7),
		kvExpire(t0.Add(time.Minute)),
		kvShare("hello"),
		kvShare("hello", "a", "b", "worker"),
	}
}

// sameKVCommand compares commands by meaning: times by instant.
func sameKVCommand(a, b KVCommand) bool {
	if !a.Now.Equal(b.Now) || !a.ExpiresAt.Equal(b.ExpiresAt) || (a.CAS == nil) != (b.CAS == nil) || a.CAS != nil && *a.CAS != *b.CAS {
		return false
	}
	a.Now, b.Now, a.ExpiresAt, b.ExpiresAt, a.CAS, b.CAS = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil, nil
	if len(a.Value) == 0 && len(b.Value) == 0 {
		a.Value, b.Value = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func TestKVBinaryRoundTrip(t *testing.T) {
	for _, c := range kvCodecCommands() {
		b, err := EncodeKVCommand(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if b[0] != KVBinaryTag || !IsKVCommand(b) || IsKVBatch(b) {
			t.Fatalf("%s encodes with tag %#x", c.Op, b[0])
		}
		got, err := DecodeKVCommand(b)
		if err != nil {
			t.Fatalf("%+v does not decode: %v", c, err)
		}
		if !sameKVCommand(c, got) {
			t.Fatalf("round trip:\n%+v\n%+v", c, got)
		}
		j, err := EncodeKVCommandJSON(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= len(j) {
			t.Errorf("%s: binary %d bytes, JSON %d", c.Op, len(b), len(j))
		}
		// Any strict prefix is rejected, never misread.
		for n := 1; n < len(b); n++ {
			if _, err := DecodeKVCommand(b[:n]); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s cut to %d of %d bytes: %v", c.Op, n, len(b), err)
			}
		}
		if _, err := DecodeKVCommand(append(b, 0)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s with a trailing byte: %v", c.Op, err)
		}
	}
}

// TestKVEncodingsApplyAlike applies the scenario once with KV commands in
// the old JSON encoding and once in the binary one: same results, same
// state.
func TestKVEncodingsApplyAlike(t *testing.T) {
	log := kvScenario(t)
	a, b := NewRegistry(), NewRegistry()
	for i, e := range log {
		je := e
		if e[0] == KVBinaryTag {
			c, err := DecodeKVCommand(e)
			if err != nil {
				t.Fatal(err)
			}
			if je, err = EncodeKVCommandJSON(c); err != nil {
				t.Fatal(err)
			}
		}
		ra, rb := a.ApplyCommand(uint64(i+1), je), b.ApplyCommand(uint64(i+1), e)
		if resultString(ra) != resultString(rb) {
			t.Fatalf("entry %d: JSON %s, binary %s", i+1, resultString(ra), resultString(rb))
		}
	}
	if sa, sb := encodeKVState(t, a.State()), encodeKVState(t, b.State()); sa != sb {
		t.Fatalf("states differ:\n%s\n%s", sa, sb)
	}
}

// TestKVOldJSONEntries applies KV entries as nodes before the binary
// encoding wrote them (frozen in testdata): logs and forwarded writes of
// older nodes keep applying the same way.
func TestKVOldJSONEntries(t *testing.T) {
	f, err := os.Open("testdata/upgrade/kv-entries-json.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewRegistry()
	var got []string
	sc := bufio.NewScanner(f)
	for i := uint64(1); sc.Scan(); i++ {
		got = append(got, resultString(r.ApplyCommand(i, sc.Bytes())))
	}
	want := []string{
		`{"V":0,"KV":{"Version":1,"Deleted":0},"Err":""}`,
		`{"V":0,"KV":{"Version":2,"Deleted":0},"Err":""}`,
		`{"V":0,"KV":{"Version":3,"Deleted":0},"Err":""}`,
		`{"V":0,"KV":{"Version":0,"Deleted":0},"Err":"\"version conflict: hello/\"config/greeting\": expected version 1, found version 3; read the key again and retry with its version"}`,
		`{"V":0,"KV":{"Version":0,"Deleted":0},"Err":""}`,
		`{"V":0,"KV":{"Version":0,"Deleted":0},"Err":""}`,
		`{"V":0,"KV":{"Version":0,"Deleted":1},"Err":""}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := r.State()
	if e, err := st.KVGet("hello", "config/greeting", t0); err != nil || string(e.Value) != "hello" || e.Version != 3 {
		t.Fatalf("greeting: %+v, %v", e, err)
	}
	if _, err := st.KVGet("hello", "session/1", t0); !errors.Is(err, ErrKVNotFound) {
		t.Fatalf("the expired session was not purged: %v", err)
	}
	if info := st.KVNamespace("hello"); !reflect.DeepEqual(info.Share, []string{"worker"}) {
		t.Fatalf("share: %+v", info)
	}
}

func mustKV(t *testing.T, c KVCommand) []byte {
	t.Helper()
	b, err := EncodeKVCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKVBatch applies a batch with failing commands among good ones: each
// command gets its own result, the failures change nothing, the others
// apply in order at the batch's index.
func TestKVBatch(t *testing.T) {
	l := newKVLog(t)
	l.must(kvPut("a", "k", "v1"))         // version 1
	l.must(kvPut("b", "x", "1").quota(1)) // version 2: b is full at quota 1
	old, _ := DecodeKVCommand(mustKV(t, kvPut("a", "old", "json")))
	oldJSON, err := EncodeKVCommandJSON(old)
	if err != nil {
		t.Fatal(err)
	}
	cmds := [][]byte{
		mustKV(t, kvPut("a", "k", "v2").cas(1)),  // ok
		mustKV(t, kvPut("a", "n", "x").cas(5)),   // conflict: absent
		mustKV(t, kvPut("b", "y", "2").quota(1)), // quota
		mustKV(t, kvDel("b", "x")),               // ok: frees b
		oldJSON,                                  // an old-format command is fine in a batch
		{KVBinaryTag, 99},                        // malformed
		EncodeKVBatch([][]byte{mustKV(t, kvPut("a", "nested", "x"))}), // no nesting
		mustKV(t, kvPut("b", "z", "3").quota(1)),                      // ok now that x is gone
		mustEncode(t, deploy("a", "1")),                               // registry commands are not KV commands
	}
	res, ok := l.r.Apply(&raft.Log{Index: 3, Data: EncodeKVBatch(cmds)}).(ApplyResult)
	if !ok || res.Err != nil || len(res.Batch) != len(cmds) {
		t.Fatalf("batch result %+v", res)
	}
	var conflict *KVConflictError
	checks := []func(ApplyResult) bool{
		func(r ApplyResult) bool { return r.Err == nil && r.KV.Version == 3 },
		func(r ApplyResult) bool {
			return errors.As(r.Err, &conflict) && conflict.Current == 0 && conflict.Expected == 5
		},
		func(r ApplyResult) bool { return errors.Is(r.Err, ErrKVQuota) },
		func(r ApplyResult) bool { return r.Err == nil && r.KV.Deleted == 1 },
		func(r ApplyResult) bool { return r.Err == nil && r.KV.Version == 3 },
		func(r ApplyResult) bool { return errors.Is(r.Err, ErrInvalid) },
		func(r ApplyResult) bool { return errors.Is(r.Err, ErrInvalid) },
		func(r ApplyResult) bool { return r.Err == nil && r.KV.Version == 3 },
		func(r ApplyResult) bool { return errors.Is(r.Err, ErrInvalid) },
	}
	for i, ok := range checks {
		if !ok(res.Batch[i]) {
			t.Errorf("command %d: %+v", i, res.Batch[i])
		}
	}
	st := l.r.State()
	for _, k := range []struct{ ns, key, val string }{{"a", "k", "v2"}, {"a", "old", "json"}, {"b", "z", "3"}} {
		if e, err := st.KVGet(k.ns, k.key, t0); err != nil || string(e.Value) != k.val || e.Version != 3 {
			t.Errorf("%s/%s: %+v, %v", k.ns, k.key, e, err)
		}
	}
	for _, k := range [][2]string{{"a", "n"}, {"b", "x"}, {"b", "y"}, {"a", "nested"}} {
		if _, err := st.KVGet(k[0], k[1], t0); !errors.Is(err, ErrKVNotFound) {
			t.Errorf("%s/%s exists: %v", k[0], k[1], err)
		}
	}
	if st.Index() != 0 || st.Len() != 0 {
		t.Fatalf("a batch touched the registry: index %d, %d functions", st.Index(), st.Len())
	}

	// A malformed frame fails whole and changes nothing.
	before := encodeKVState(t, st)
	good := EncodeKVBatch([][]byte{mustKV(t, kvPut("a", "late", "x"))})
	for _, bad := range [][]byte{
		{KVBatchTag},
		{KVBatchTag, 0},
		good[:len(good)-1],
		append(good[:len(good):len(good)], 0),
		{KVBatchTag, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if res := l.r.ApplyCommand(4, bad); !errors.Is(res.Err, ErrInvalid) || res.Batch != nil {
			t.Errorf("malformed batch %x: %+v", bad, res)
		}
	}
	if after := encodeKVState(t, l.r.State()); after != before {
		t.Fatalf("a malformed batch changed the state")
	}
}

func TestKVCommandKey(t *testing.T) {
	for _, tc := range []struct {
		data    []byte
		ns, key string
		ok      bool
	}{
		{mustKV(t, kvPut("a", "k/1", "v").cas(3).ttl(time.Second)), "a", "k/1", true},
		{mustKV(t, kvDel("b", "x")), "b", "x", true},
		{mustKV(t, kvShare("a", "b")), "", "", false},
		{mustKV(t, kvExpire(t0)), "", "", false},
		{[]byte(`K{"op":"kv_put"}`), "", "", false},
		{[]byte{KVBinaryTag, kvOpPut}, "", "", false},
		{nil, "", "", false},
	} {
		ns, key, ok := KVCommandKey(tc.data)
		if ns != tc.ns || key != tc.key || ok != tc.ok {
			t.Errorf("KVCommandKey(%x) = %q %q %v", tc.data, ns, key, ok)
		}
	}
}

// FuzzKVBinary feeds arbitrary binary commands, alone and as a batch, to
// Apply: no panic, an ApplyResult with one result per command, failures
// change nothing, and a command that decodes encodes back to itself.
func FuzzKVBinary(f *testing.F) {
	for _, c := range kvCodecCommands() {
		b, err := EncodeKVCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[1:])
	}
	f.Add([]byte{})
	f.Add([]byte{kvOpPut, 0xfc, 0})

	f.Fuzz(func(t *testing.T, payload []byte) {
		data := append([]byte{KVBinaryTag}, payload...)
		if c, err := DecodeKVCommand(data); err == nil {
			again, err := EncodeKVCommand(c)
			if err != nil {
				t.Fatalf("decoded %+v does not encode: %v", c, err)
			}
			if c2, err := DecodeKVCommand(again); err != nil || !sameKVCommand(c, c2) {
				t.Fatalf("re-encoding %+v: %+v, %v", c, c2, err)
			}
		}
		for _, entry := range [][]byte{data, EncodeKVBatch([][]byte{data, payload})} {
			l := newKVLog(t)
			l.must(kvPut("a", "k", "v"))
			l.must(kvPut("a", "t", "v").ttl(time.Second))
			l.must(kvShare("c", "a"))
			before := encodeKVState(t, l.r.State())
			res, ok := l.r.Apply(&raft.Log{Index: l.next, Data: entry}).(ApplyResult)
			if !ok {
				t.Fatal("Apply did not return an ApplyResult")
			}
			results := []ApplyResult{res}
			if IsKVBatch(entry) {
				if len(res.Batch) != 2 || res.Err != nil {
					t.Fatalf("batch result %+v", res)
				}
				results = res.Batch
			}
			after := encodeKVState(t, l.r.State())
			failed := true
			for _, r := range results {
				failed = failed && r.Err != nil
				if r.Err == nil && r.KV.Version != 0 && r.KV.Version != l.next {
					t.Fatalf("put version %d, want the entry's index %d", r.KV.Version, l.next)
				}
			}
			if failed && after != before {
				t.Fatalf("failed commands %x changed the state", entry)
			}
			r2 := NewRegistry()
			if err := r2.Restore(io.NopCloser(bytes.NewReader([]byte(after)))); err != nil {
				t.Fatalf("state after %x does not restore: %v", entry, err)
			}
		}
	})
}
