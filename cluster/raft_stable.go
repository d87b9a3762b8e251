package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// stableStore is raft's StableStore (its current term and vote) over
// BoltDB, closed through close. raft's transport handles a heartbeat
// outside raft's main loop, and one that passed raft's shutdown check can
// still persist a newer term after Shutdown and the transport's Close
// returned; BoltDB, closed by then, fails the write and raft panics
// ("failed to save current term: database not open"), taking the whole
// process down (seen once in CI, a node closing while its peers sent
// heartbeats). After close, writes are dropped instead: the node has
// stopped and learns the term from the leader when it starts again, and
// votes are persisted only by raft's main loop, which Shutdown ended. A
// write under way finishes before BoltDB closes.
type stableStore struct {
	raft.StableStore
	mu     sync.RWMutex
	closed bool
}

// Set implements raft.StableStore.
func (s *stableStore) Set(key, val []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.Set(key, val)
}

// SetUint64 implements raft.StableStore.
func (s *stableStore) SetUint64(key []byte, val uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.StableStore.SetUint64(key, val)
}

// close makes later writes no-ops, waits for one under way, then runs
// closeDB (the BoltDB file's Close).
func (s *stableStore) close(closeDB func() error) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return closeDB()
}
