package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Linearizable reads on a follower follow the read-index idea of the Raft
// paper (section 6.4): the follower asks the leader for an index that
// covers every write acknowledged before the read began (the leader runs a
// barrier, which commits an entry in its term, so it is still the leader,
// and applies everything before it, then answers the index of the last
// command its state machine applied), waits until its own state machine
// has applied that command, and then reads its local state. The read
// costs one round trip to the leader and no log entry of its own on the
// follower.
//
// Both sides use storage.State.Applied, not raft's AppliedIndex: raft
// advances that when it hands entries to the state machine's goroutine,
// before they are applied, so a read after it could miss them.

// readIndexResponse is the leader's answer to /peer/v1/readindex.
type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// readIndex answers the index a follower must apply before a
// linearizable read. Only the leader answers; others say not_leader.
func (p *peerAPI) readIndex(w http.ResponseWriter, r *http.Request) {
	n := p.cfg.Store.node
	if !n.IsLeader() {
		p.fail(w, n.notLeader(false))
		return
	}
	if err := n.Barrier(r.Context()); err != nil {
		p.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, readIndexResponse{Index: p.cfg.Store.reg.State().Applied()})
}

// ReadIndex asks the leader at base for a read index.
func (c *PeerClient) ReadIndex(ctx context.Context, base string) (uint64, error) {
	resp, err := c.do(ctx, "POST", base+"/peer/v1/readindex", nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out readIndexResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("peer %s: decode read index: %w", base, err)
	}
	return out.Index, nil
}

// appliedPoll is how often WaitApplied looks at the applied index: a
// follower usually trails the leader by one replication round trip.
const appliedPoll = time.Millisecond

// waitApplied returns once this node's state machine has applied the
// command at index (storage.State.Applied), or ctx's error.
func (s *Store) waitApplied(ctx context.Context, index uint64) error {
	if s.reg.State().Applied() >= index {
		return nil
	}
	t := time.NewTicker(appliedPoll)
	defer t.Stop()
	for s.reg.State().Applied() < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting to apply index %d (applied %d): %w", ErrUnavailable, index, s.reg.State().Applied(), context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// followerReadBarrier makes this follower's state at least as new as
// every write acknowledged before the call: it gets a read index from the
// leader (retrying through leader changes until ctx or the node's write
// timeout ends) and waits until it has applied it.
func (s *Store) followerReadBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.node.timeout(ctx))
	defer cancel()
	for {
		var err error = s.node.notLeader(false)
		if s.node.IsLeader() {
			// Leadership came here meanwhile.
			return s.node.Barrier(ctx)
		}
		var nl *NotLeaderError
		if s.peerClient == nil {
			return err
		}
		if errors.As(err, &nl) && nl.LeaderID != "" {
			if url, ok := s.peers.PeerURL(nl.LeaderID); ok {
				actx, acancel := context.WithTimeout(ctx, forwardAttemptTimeout)
				var index uint64
				index, err = s.peerClient.ReadIndex(actx, url)
				acancel()
				if err == nil {
					return s.waitApplied(ctx, index)
				}
			}
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader answered a read index in time: %w", err)
		case <-time.After(retryBackoff):
		}
	}
}
