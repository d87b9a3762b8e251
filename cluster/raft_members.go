package cluster

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// ServerInfo is one server of the Raft configuration.
type ServerInfo struct {
	ID     string `json:"id"`
	Addr   string `json:"raft_addr"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

// Servers returns the Raft configuration as this node knows it.
func (n *Node) Servers() ([]ServerInfo, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft: read configuration: %w", err)
	}
	_, leader := n.raft.LeaderWithID()
	var out []ServerInfo
	for _, s := range f.Configuration().Servers {
		out = append(out, ServerInfo{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader})
	}
	return out, nil
}

// AddServer adds a server to the cluster, as a voter or a non-voter (a
// read replica that never votes). Adding a server that is already there
// with the same address and role is a no-op; a changed address is
// updated. Only the leader can do this (ErrNotLeader otherwise).
func (n *Node) AddServer(ctx context.Context, id, addr string, voter bool) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader(false)
	}
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.Addr == addr && s.Voter == voter {
			return nil
		}
		if s.ID == id && s.Addr != addr && raft.ServerID(id) != n.id {
			// A server at a new address: remove it, then add it. Adding it
			// over its old entry makes hashicorp/raft rewrite the peer of
			// its running replication goroutines without their lock
			// (startStopReplication against updateLastAppended and the
			// error logs, hashicorp/raft#681, still in v1.8.0): a data race
			// the race detector reports, and a torn read of the address
			// in production. Removed and added, the server gets a fresh
			// replication state. The leader's own entry has no
			// replication and is updated in place.
			if err := n.RemoveServer(ctx, id); err != nil {
				return fmt.Errorf("raft: move server %s from %s to %s: %w", id, s.Addr, addr, err)
			}
			n.log.Info("raft server removed to be added at its new address", "server_id", id, "old_raft_addr", s.Addr, "raft_addr", addr)
		}
	}
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.timeout(ctx))
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.timeout(ctx))
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("raft: add server %s at %s: %w", id, addr, n.applyError(err))
	}
	n.log.Info("raft server added", "server_id", id, "raft_addr", addr, "voter", voter)
	return nil
}

// RemoveServer removes a server from the cluster (leader only).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader(false)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raft: remove server %s: %w", id, n.applyError(err))
	}
	n.log.Info("raft server removed", "server_id", id)
	return nil
}

// WaitLeader blocks until some node is known as the leader or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		ch := n.changedCh()
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("raft: no leader known to node %s: %w", n.id, context.Cause(ctx))
		}
	}
}

// BootstrapServers bootstraps a new cluster whose voters are this node
// and servers (bootstrap-expect). It is for a node opened with Join whose
// data directory had no Raft state; raft refuses it otherwise
// (ErrCantBootstrap).
func (n *Node) BootstrapServers(servers []ServerInfo) error {
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: n.id, Address: n.trans.LocalAddr()}}}
	for _, s := range servers {
		if s.ID != string(n.id) {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Addr)})
		}
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("raft: bootstrap %d voters: %w", len(conf.Servers), err)
	}
	n.log.Info("bootstrapped the cluster with the expected servers", "voters", len(conf.Servers))
	return nil
}
