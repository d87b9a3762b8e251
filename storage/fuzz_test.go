package storage

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApplyCommand feeds arbitrary bytes to Apply: it must never panic,
// must always return an ApplyResult, must leave the state unchanged when it
// reports an error, and the state must survive a snapshot round trip.
func FuzzApplyCommand(f *testing.F) {
	for _, c := range []Command{
		deploy("a", "1"), rollback("a", 0), rollback("a", 1), remove("a"),
		{Op: OpDeploy, Name: "a", Spec: &Spec{SHA256: shaOf(nil), Size: 1, Env: map[string]string{"K": "V"}}},
	} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":"rollback","name":"a","version":-9223372036854775808}`))
	f.Add([]byte(`{"op":"deploy","name":"a","spec":{"sha256":"","size":1e99}}`))
	f.Add([]byte(`not json`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewRegistry()
		// A non-empty registry, so rollback and remove have targets.
		applyAll(t, r, deploy("a", "1"), deploy("a", "2"), deploy("b", "1"))
		var before bytes.Buffer
		if err := r.State().Encode(&before); err != nil {
			t.Fatal(err)
		}
		res, ok := r.Apply(&raft.Log{Index: 4, Data: data}).(ApplyResult)
		if !ok {
			t.Fatal("Apply did not return an ApplyResult")
		}
		st := r.State()
		// KV commands (FuzzKVCommand) do not move the registry index.
		if want := map[bool]uint64{false: 4, true: 3}[IsKVCommand(data)]; st.Index() != want {
			t.Fatalf("Index = %d, want %d", st.Index(), want)
		}
		if res.Err != nil {
			if res.Version.Version != 0 {
				t.Fatalf("error result carries version %d", res.Version.Version)
			}
			var after bytes.Buffer
			if err := st.Encode(&after); err != nil {
				t.Fatal(err)
			}
			// Only the indexes differ: the registry's (a failed registry
			// command still takes its entry) and Applied (every entry).
			a := bytes.Replace(after.Bytes(), []byte(`"index":4`), []byte(`"index":3`), 1)
			a = bytes.Replace(a, []byte(`"applied":4`), []byte(`"applied":3`), 1)
			if !bytes.Equal(a, before.Bytes()) {
				t.Fatalf("failed command %q changed the state", data)
			}
		}
		var snap bytes.Buffer
		if err := st.Encode(&snap); err != nil {
			t.Fatal(err)
		}
		r2 := NewRegistry()
		if err := r2.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
			t.Fatalf("state after %q does not restore: %v", data, err)
		}
	})
}
