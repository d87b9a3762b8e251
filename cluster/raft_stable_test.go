package cluster

import (
	"path/filepath"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// After close, raft's writes of its term are dropped instead of failing
// on the closed BoltDB file, which made raft panic when a heartbeat
// handled outside its main loop persisted a term during shutdown; before
// close they reach the file.
func TestStableStoreDropsWritesAfterClose(t *testing.T) {
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(t.TempDir(), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := &stableStore{StableStore: bolt}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if v, err := bolt.GetUint64([]byte("CurrentTerm")); err != nil || v != 2 {
		t.Fatalf("term before close: %d, %v", v, err)
	}
	if err := s.close(bolt.Close); err != nil {
		t.Fatal(err)
	}
	if err := bolt.SetUint64([]byte("CurrentTerm"), 3); err == nil {
		t.Fatal("the closed BoltDB accepted a write; the test cannot show the wrapper matters")
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatalf("a term written after close: %v, want it dropped (raft panics on an error)", err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("x")); err != nil {
		t.Fatalf("a vote written after close: %v", err)
	}
}
