package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leave removes this node from the Raft configuration before it shuts
// down for good, so the cluster does not count it as a failed voter. A
// leader hands leadership over first. Restarting later needs a new join.
func (s *Store) Leave(ctx context.Context) error {
	if s.node.IsLeader() {
		if err := s.node.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("leave: hand leadership over: %w", err)
		}
		if err := s.node.WaitLeader(ctx); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
	}
	for {
		_, leader := s.node.Leader()
		url, ok := "", false
		if s.peers != nil && leader != "" {
			url, ok = s.peers.PeerURL(leader)
		}
		if ok {
			err := s.peerClient.Remove(ctx, url, s.node.ID())
			if err == nil {
				s.node.log.Info("left the cluster")
				return nil
			}
			if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) {
				return fmt.Errorf("leave: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leave: no leader removed this node in time: %w", ctx.Err())
		case <-time.After(retryBackoff):
		}
	}
}
