package storage

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzKVCommand feeds arbitrary KV command payloads to Apply, on a state
// with functions, keys, TTLs and shares: Apply must never panic, must
// return an ApplyResult, must not move the registry index, must leave the
// state unchanged when it reports an error, and the state must survive a
// snapshot round trip byte for byte.
func FuzzKVCommand(f *testing.F) {
	for _, c := range []KVCommand{
		kvPut("a", "k", "v"), kvPut("a", "k", "v").cas(0), kvPut("a", "k", "v").cas(2),
		kvPut("a", "t", "v").ttl(time.Second), kvPut("b", "n", "v").quota(1),
		kvDel("a", "k"), kvDel("a", "k").cas(2), kvExpire(t0.Add(time.Hour)),
		kvShare("a", "b", "c"), kvShare("a"),
	} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":"kv_put","ns":"a","key":"k","value":"!!","now":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"op":"kv_put","ns":"a","key":"k","expires_at":"9999-01-01T00:00:00Z","now":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"op":"kv_delete","ns":"a","key":"k","cas":-1,"now":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"op":"kv_share","ns":"a","share":["a"],"now":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, payload []byte) {
		l := newKVLog(t)
		l.r.ApplyCommand(l.next, mustEncode(t, deploy("a", "1")))
		l.next++
		l.must(kvPut("a", "k", "v"))
		l.must(kvPut("a", "t", "v").ttl(time.Second))
		l.must(kvPut("b", "n", "v"))
		l.must(kvShare("c", "a"))
		before := encodeKVState(t, l.r.State())

		data := append([]byte{KVCommandTag}, payload...)
		res, ok := l.r.Apply(&raft.Log{Index: l.next, Data: data}).(ApplyResult)
		if !ok {
			t.Fatal("Apply did not return an ApplyResult")
		}
		st := l.r.State()
		if st.Index() != 1 {
			t.Fatalf("a KV command moved the registry index to %d", st.Index())
		}
		after := encodeKVState(t, st)
		if res.Err != nil && after != before {
			t.Fatalf("failed command %q (%v) changed the state", payload, res.Err)
		}
		if res.Err == nil && res.KV.Version != 0 && res.KV.Version != l.next {
			t.Fatalf("put version %d, want the entry's index %d", res.KV.Version, l.next)
		}
		r2 := NewRegistry()
		if err := r2.Restore(io.NopCloser(bytes.NewReader([]byte(after)))); err != nil {
			t.Fatalf("state after %q does not restore: %v", payload, err)
		}
		if again := encodeKVState(t, r2.State()); again != after {
			t.Fatalf("round trip after %q differs:\n%s\n%s", payload, after, again)
		}
	})
}
