package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLastVoter refuses to remove the only voter of the Raft
// configuration: the cluster would have no one to elect.
var ErrLastVoter = errors.New("the member is the cluster's only voter")

// forceLeaveTimeout bounds a force-leave's wait for a leader to commit
// the Raft change.
const forceLeaveTimeout = 15 * time.Second

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
	if err := s.removeServer(ctx, s.node.ID()); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	s.node.log.Info("left the cluster")
	return nil
}

// removeServer removes server id from the Raft configuration: on this
// node when it leads, else through the leader's peer API. It retries
// while no leader is known or leadership moves, until ctx ends.
func (s *Store) removeServer(ctx context.Context, id string) error {
	for {
		var err error
		_, leader := s.node.Leader()
		url, ok := "", false
		if s.peers != nil && leader != "" {
			url, ok = s.peers.PeerURL(leader)
		}
		switch {
		case s.node.IsLeader():
			err = s.node.RemoveServer(ctx, id)
		case ok:
			err = s.peerClient.Remove(ctx, url, id)
		case leader == "":
			err = fmt.Errorf("%w: no leader is known to node %s", ErrUnavailable, s.node.ID())
		default:
			err = fmt.Errorf("%w: the peer API address of the leader %s is not known yet", ErrUnavailable, leader)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader removed server %s in time (%w): a cluster that lost a majority of its voters cannot change its configuration: %w",
				id, context.Cause(ctx), err)
		case <-time.After(retryBackoff):
		}
	}
}

// ForceLeave removes a member that is gone for good (a machine lost for
// good, a node killed without leaving) from the Raft configuration and
// from every node's members list, which a node that left gracefully does
// by itself (Leave, cluster.leave_on_shutdown). Any node takes it: the
// Raft change goes to the leader, the list change by gossip.
//
// It refuses a member this node sees alive or leaving (*MemberAliveError),
// this node included; a name neither gossip nor Raft lists
// (ErrMemberNotFound); and the only voter (ErrLastVoter). Removing a voter
// needs a leader, so a cluster that lost a majority of its voters cannot
// (ErrUnavailable after 15 s): restore a backup into a new cluster then.
// A force-left node that comes back alive rejoins, as one the autopilot
// removed does; empty its data directory to keep it out.
func (a *Agent) ForceLeave(ctx context.Context, name string) (ForceLeaveResult, error) {
	res := ForceLeaveResult{Name: name, Status: "unknown", RaftRole: "none"}
	var member Member
	listed := false
	for _, m := range a.members.Members() {
		if m.Name == name {
			member, listed = m, true
		}
	}
	servers, err := a.store.node.Servers()
	if err != nil {
		return res, err
	}
	var server ServerInfo
	inRaft, voters := false, 0
	for _, s := range servers {
		if s.Voter {
			voters++
		}
		if s.ID == name {
			server, inRaft = s, true
		}
	}
	switch {
	case !listed && !inRaft:
		return res, fmt.Errorf("no member named %q: %w", name, ErrMemberNotFound)
	case name == a.store.node.ID() || listed && (member.Status == StatusAlive || member.Status == StatusLeaving):
		if !listed {
			member = Member{Name: name, Status: StatusAlive}
		}
		return res, &MemberAliveError{Member: member}
	case inRaft && server.Voter && voters == 1:
		return res, fmt.Errorf("member %s: %w: removing it leaves no server to elect a leader. "+
			"Start a new node and join it first (the autopilot makes it a voter), or, if the cluster is lost, restore a backup into a new cluster", name, ErrLastVoter)
	}
	if listed {
		res.Status = string(member.Status)
	}
	if inRaft {
		res.RaftRole = "non-voter"
		if server.Voter {
			res.RaftRole = "voter"
		}
		rctx, cancel := context.WithTimeout(ctx, forceLeaveTimeout)
		err := a.store.removeServer(rctx, name)
		cancel()
		if err != nil {
			return res, fmt.Errorf("force-leave %s: %w", name, err)
		}
		res.RemovedFromRaft = true
	}
	if err := a.members.ForceLeave(name); err != nil && !errors.Is(err, ErrMemberNotFound) {
		return res, fmt.Errorf("force-leave %s: removed from Raft, but not from the members list: %w", name, err)
	}
	a.log.Warn("force-left a member", "member", name, "status", res.Status, "raft_role", res.RaftRole, "removed_from_raft", res.RemovedFromRaft)
	return res, nil
}
