package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// AutopilotConfig tunes voter management (the idea of Consul's autopilot):
// the cluster keeps MaxVoters voters, removes servers that stopped
// answering the leader for longer than DeadServerTimeout, and promotes a
// healthy non-voter when a voter is missing.
type AutopilotConfig struct {
	// MaxVoters is how many servers vote: 3 (tolerates one failure) or 5
	// (two). Default 3. Every other server is a non-voter that serves
	// reads locally and does not slow commits.
	MaxVoters int
	// DeadServerTimeout is how long a server may miss the leader's
	// heartbeats before it is removed. Default 30s.
	DeadServerTimeout time.Duration
	// Interval is how often the leader checks. Default 1s.
	Interval time.Duration
}

func (c AutopilotConfig) withDefaults() AutopilotConfig {
	if c.MaxVoters <= 0 {
		c.MaxVoters = 3
	}
	if c.DeadServerTimeout <= 0 {
		c.DeadServerTimeout = 30 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	return c
}

// RunAutopilot manages voters while this node leads, until ctx ends. The
// caller owns the goroutine that runs it.
func (n *Node) RunAutopilot(ctx context.Context, cfg AutopilotConfig) {
	cfg = cfg.withDefaults()
	n.mu.Lock()
	n.maxVoters = cfg.MaxVoters
	n.mu.Unlock()
	obs := make(chan raft.Observation, 64)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	failing := map[raft.ServerID]time.Time{} // since when a server misses heartbeats
	// A removed server's replication goroutine lives on for up to ~40 s
	// (raft's best-effort final replication sleeps out its backoff) and
	// keeps reporting failed heartbeats with its frozen last contact. If
	// the server rejoins meanwhile (a restart on a new address), those
	// reports must not remove it again: gone keeps the last contact of
	// removed servers, and reports no newer than it are ignored.
	gone := map[raft.ServerID]goneServer{}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ob := <-obs:
			switch d := ob.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if g, ok := gone[d.PeerID]; ok && !d.LastContact.After(g.lastContact) {
					continue // the removed server's old replication
				}
				if _, ok := failing[d.PeerID]; !ok {
					failing[d.PeerID] = d.LastContact
				}
			case raft.ResumedHeartbeatObservation:
				delete(failing, d.PeerID)
			case raft.PeerObservation:
				if since, ok := failing[d.Peer.ID]; ok && d.Removed {
					gone[d.Peer.ID] = goneServer{lastContact: since, at: time.Now()}
				}
				delete(failing, d.Peer.ID)
			}
		case <-tick.C:
			if n.raft.State() != raft.Leader {
				clear(failing) // a new leader starts from fresh observations
				clear(gone)
				continue
			}
			for id, g := range gone {
				if time.Since(g.at) > goneMemory {
					delete(gone, id)
				}
			}
			n.autopilotPass(ctx, cfg, failing, gone)
		}
	}
}

// goneMemory is how long the autopilot remembers a removed server's last
// contact: longer than raft's longest replication backoff (10 ms << 12).
const goneMemory = 2 * time.Minute

type goneServer struct {
	lastContact time.Time // the removed server's, frozen in its old replication
	at          time.Time // when it was removed
}

func (n *Node) autopilotPass(ctx context.Context, cfg AutopilotConfig, failing map[raft.ServerID]time.Time, gone map[raft.ServerID]goneServer) {
	servers, err := n.Servers()
	if err != nil {
		return
	}
	voters := 0
	for _, s := range servers {
		since, bad := failing[raft.ServerID(s.ID)]
		if bad && s.ID != n.ID() && time.Since(since) > cfg.DeadServerTimeout {
			n.log.Warn("removing a server that stopped answering", "server_id", s.ID, "voter", s.Voter, "silent_for", time.Since(since).Round(time.Second))
			if err := n.RemoveServer(ctx, s.ID); err != nil {
				n.log.Warn("autopilot: remove failed", "server_id", s.ID, "err", err)
				return
			}
			gone[raft.ServerID(s.ID)] = goneServer{lastContact: since, at: time.Now()}
			delete(failing, raft.ServerID(s.ID))
			continue
		}
		if s.Voter {
			voters++
		}
	}
	if voters >= cfg.MaxVoters {
		return
	}
	for _, s := range servers {
		if s.Voter {
			continue
		}
		if _, bad := failing[raft.ServerID(s.ID)]; bad {
			continue
		}
		n.log.Info("promoting a healthy non-voter", "server_id", s.ID, "voters", voters, "max_voters", cfg.MaxVoters)
		if _, err := n.addServerCapped(ctx, s.ID, s.Addr, true); err != nil {
			n.log.Warn("autopilot: promotion failed", "server_id", s.ID, "err", err)
		}
		return // one change per pass; the next pass sees the result
	}
}

// addServerCapped adds id at addr (or updates its address), as a voter
// when it asks to be one and the cluster has fewer than MaxVoters voters.
// joinMu makes the count and the change one step, so joins, re-adds and
// promotions arriving together cannot take the cluster past MaxVoters (the
// autopilot never demotes). It returns whether id was added as a voter.
func (n *Node) addServerCapped(ctx context.Context, id, addr string, wantVoter bool) (bool, error) {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	voter := wantVoter && n.joinAsVoter(id)
	return voter, n.AddServer(ctx, id, addr, voter)
}

// joinAsVoter says whether a server asking to vote gets to: only while the
// cluster has fewer than MaxVoters voters. Callers hold joinMu.
func (n *Node) joinAsVoter(id string) bool {
	n.mu.Lock()
	maxVoters := n.maxVoters
	n.mu.Unlock()
	if maxVoters == 0 {
		maxVoters = 3
	}
	servers, err := n.Servers()
	if err != nil {
		return false
	}
	voters := 0
	for _, s := range servers {
		if s.ID == id && s.Voter {
			return true // already a voter (a restart with a new address)
		}
		if s.Voter {
			voters++
		}
	}
	return voters < maxVoters
}
