package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// ClashKind says which part of a node's identity another node claims.
type ClashKind string

// Kinds of IdentityClash.
const (
	// ClashNodeID: another address announces this node's gossip name,
	// its node ID. Two live nodes with one ID are one data directory run
	// twice (a copy, a restored disk image).
	ClashNodeID ClashKind = "node ID"
	// ClashNodeName: another member announces this node's NodeMeta.Name
	// (gojinn-node's node_name).
	ClashNodeName ClashKind = "node name"
)

// IdentityClash is another node claiming this node's identity, as gossip
// reported it. Gossip alone cannot tell a live clash from a stale report
// of this very node at an old address (a restart on a new address, before
// the old one was declared dead), so the Agent asks the other address
// before it acts (DESIGN.md, "Identity clashes").
type IdentityClash struct {
	Kind ClashKind
	// Other is the other node as gossip describes it: for ClashNodeID its
	// Name is this node's, its Addr and Meta are the other's.
	Other Member
}

// maxClashes bounds the clashes waiting for IdentityClashes.
const maxClashes = 16

// clashLogEvery is how often one clash (kind and address) is logged:
// gossip reports a live one with every message of the other node.
const clashLogEvery = 10 * time.Second

// addClashLocked records c (the latest per kind and address), signals
// IdentityClashed without blocking, and logs it at most every
// clashLogEvery: a node seeing a newcomer with its identity says so even
// if the newcomer stops before this node's check reaches it.
func (t *memberTable) addClashLocked(c IdentityClash) {
	key := string(c.Kind) + "|" + c.Other.Addr
	now := time.Now()
	if at, ok := t.clashLogged[key]; !ok || now.Sub(at) > clashLogEvery {
		if len(t.clashLogged) >= maxClashes {
			clear(t.clashLogged)
		}
		t.clashLogged[key] = now
		t.log.Warn("gossip: another node claims this node's "+string(c.Kind)+"; if it answers as that node, the one of the two started later stops (two live nodes with one ID run copies of one data directory; node names must be unique)",
			"other_member", c.Other.Name, "other_addr", c.Other.Addr, "other_node_name", c.Other.Meta.Name)
	}
	if _, ok := t.clashes[key]; !ok && len(t.clashes) >= maxClashes {
		return // the agent has not looked yet; these are enough to act on
	}
	t.clashes[key] = c
	select {
	case t.clashCh <- struct{}{}:
	default:
	}
}

// checkNameLocked looks at m, an alive member: when it announces this
// node's NodeMeta.Name, that is a clash; when it announces another
// member's, this node only logs it (each of the two checks its own).
func (t *memberTable) checkNameLocked(m Member) {
	name := m.Meta.Name
	if name == "" || m.Name == t.self {
		return
	}
	if name == t.selfName {
		t.addClashLocked(IdentityClash{Kind: ClashNodeName, Other: m})
		return
	}
	for _, o := range t.members {
		if o.Name != m.Name && o.Name != t.self && o.Status == StatusAlive && o.Meta.Name == name {
			t.log.Warn("gossip: two live members announce one node name; the one started later stops (node names must be unique: set node_name on each node)",
				"node_name", name, "member", o.Name, "addr", o.Addr, "other_member", m.Name, "other_addr", m.Addr)
			return
		}
	}
}

// takeClashes returns the clashes recorded since the last call.
func (t *memberTable) takeClashes() []IdentityClash {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]IdentityClash, 0, len(t.clashes))
	for k, c := range t.clashes {
		out = append(out, c)
		delete(t.clashes, k)
	}
	return out
}

// setSelfName records this node's NodeMeta.Name.
func (t *memberTable) setSelfName(name string) {
	t.mu.Lock()
	t.selfName = name
	t.mu.Unlock()
}

// conflictDelegate receives memberlist's name conflicts: an alive message
// for a known name from another address. memberlist keeps the address it
// knows and drops the message. About this node's own name it is a clash
// for the Agent to check; about another member's, this node logs why it
// refuses the newcomer.
type conflictDelegate struct {
	t       *memberTable
	log     *slog.Logger
	reclaim time.Duration
}

var _ memberlist.ConflictDelegate = conflictDelegate{}

// NotifyConflict implements memberlist.ConflictDelegate. memberlist calls
// it holding its node lock: it only records and logs.
func (c conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name == c.t.self {
		meta, _, _ := decodeMeta(other.Meta) // a zero meta only loses the start time and API address
		c.t.mu.Lock()
		c.t.addClashLocked(IdentityClash{Kind: ClashNodeID, Other: Member{
			Name: other.Name, Addr: other.Address(), Meta: meta, Status: StatusAlive, Since: time.Now(),
		}})
		c.t.mu.Unlock()
		return
	}
	c.log.Warn("gossip: a node claims the node ID of a member at another address; it is refused until that member is declared dead and DeadNodeReclaimTime has passed. "+
		"A node restarted on a new address gets in then; if both are alive, one runs a copy of the other's data directory, and the one started later stops: start it again with an empty data directory",
		"node_id", existing.Name, "known_addr", existing.Address(), "claiming_addr", other.Address(),
		"dead_node_reclaim_time", c.reclaim.String())
}

// Errors an agent stops with (Agent.Failed) when it finds another live
// node with its identity.
var (
	// ErrDuplicateNodeID: another live node runs with this node's ID, so
	// one of the two runs a copy of the other's data directory.
	ErrDuplicateNodeID = errors.New("another live node has this node's ID")
	// ErrDuplicateNodeName: a live member announces this node's
	// AgentConfig.NodeName.
	ErrDuplicateNodeName = errors.New("another live member has this node's name")
)

// Timings of the identity check.
const (
	// clashProbeTimeout bounds the question to the other address.
	clashProbeTimeout = 3 * time.Second
	// clashRecheck is how long a clash with one address is not looked at
	// again: gossip reports a live one over and over.
	clashRecheck = 10 * time.Second
)

// Failed receives the error the agent stopped with, once, when it found
// another live node with its identity (ErrDuplicateNodeID,
// ErrDuplicateNodeName) and this node started later. The agent then has
// shut its gossip down and stopped joining; the owner must Close it
// (gojinn-node exits with the error).
func (a *Agent) Failed() <-chan error { return a.failed }

// fail stops the agent's gossip and background work with err and
// reports it on Failed; later calls do nothing. It must not wait for the
// agent's goroutines, since one of them calls it.
func (a *Agent) fail(err error) {
	a.failOnce.Do(func() {
		a.log.Error("this node stops: another live node has its identity", "err", err)
		if errors.Is(err, ErrDuplicateNodeID) {
			// Raft first, at once: while this node answers Raft as the
			// other one, its acknowledgements count for that node's ID.
			if cerr := a.store.node.Close(); cerr != nil {
				a.log.Warn("raft shutdown after the identity clash", "err", cerr)
			}
		}
		// No gossip leave, for a name clash either: peers would take the
		// node as gone for good and the leader would remove it from Raft
		// (an operator fixing node_name and restarting it keeps its place).
		a.stop()
		_ = a.members.Shutdown() // the second call, in Close, is a no-op
		a.failed <- err
	})
}

// watchIdentity checks every identity clash gossip reports until ctx
// ends, and stops the agent when the clash is real and this node is the
// one to stop.
func (a *Agent) watchIdentity(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.members.IdentityClashed():
			if err := a.checkIdentity(ctx); err != nil {
				return // checkIdentity has failed the agent
			}
		}
	}
}

// checkIdentity looks at the clashes gossip reported and returns the
// error this node must stop with, if any. A clash is real when a node
// answers at the other's peer API address as that node (the ID and gossip
// address gossip reported); a stale report of this node's own old address
// gets no such answer. Of two live nodes, the one started later stops
// (checkIdentity calls fail itself, under identityMu, so that a caller
// that waited for the lock finds the agent failed already: the start's
// wait for the first join round relies on it); the other logs the clash.
func (a *Agent) checkIdentity(ctx context.Context) error {
	a.identityMu.Lock()
	defer a.identityMu.Unlock()
	now := time.Now()
	for k, at := range a.clashSeen {
		if now.Sub(at) > clashRecheck {
			delete(a.clashSeen, k)
		}
	}
	for _, c := range a.members.IdentityClashes() {
		key := string(c.Kind) + "|" + c.Other.Addr
		if _, ok := a.clashSeen[key]; ok {
			continue
		}
		a.clashSeen[key] = now
		if why := a.answersAs(ctx, c.Other); why != "" {
			a.log.Info("gossip reported another address with this node's identity, but no node answers there as that node (this node's old address, after a restart?); ignoring it",
				"clash", string(c.Kind), "other_member", c.Other.Name, "other_addr", c.Other.Addr, "why", why)
			continue
		}
		err := a.clashError(c)
		if c.Other.Meta.Started == 0 || c.Other.Meta.Started <= a.started {
			a.fail(err) // this node started later (or as late): it stops
			return err
		}
		a.log.Error("another live node has this node's identity; it started later and stops itself", "err", err)
		// The other node may never hear of this one: gossip elsewhere
		// keeps the address it saw first, and this node's own list has
		// no entry for the other (one name, one entry). A push/pull with
		// it hands it this node's state, where it meets the clash.
		jctx, cancel := context.WithTimeout(ctx, clashProbeTimeout)
		if _, jerr := a.members.JoinNow(jctx, []string{c.Other.Addr}); jerr != nil {
			a.log.Warn("could not reach the node with this node's identity by gossip", "addr", c.Other.Addr, "err", jerr)
		}
		cancel()
	}
	return nil
}

// answersAs asks the peer API that m announces who it is, and returns
// "" when a node answers there as m (its name and gossip address), else
// why not: gossip's entry may be stale (the node restarted elsewhere).
func (a *Agent) answersAs(ctx context.Context, m Member) string {
	if m.Meta.APIAddr == "" {
		return "gossip gave no peer API address"
	}
	pctx, cancel := context.WithTimeout(ctx, clashProbeTimeout)
	defer cancel()
	info, err := a.client.Info(pctx, "https://"+m.Meta.APIAddr)
	switch {
	case err != nil:
		return err.Error()
	case info.NodeID != m.Name || info.GossipAddr != m.Addr:
		return fmt.Sprintf("%s answers as node %s with gossip at %s", m.Meta.APIAddr, info.NodeID, info.GossipAddr)
	}
	return ""
}

// clashError says what clashed and how to fix it.
func (a *Agent) clashError(c IdentityClash) error {
	if c.Kind == ClashNodeID {
		return fmt.Errorf("%w: the node at %s (peer API %s) runs with this node's ID %s: one of the two runs a copy of the other's data directory (DATA/node-id and the cluster certificate). "+
			"The node started later stops. Start it again with an empty data directory: it enrolls as a new node (with a join token) and gets an ID of its own; never run two copies of one data directory",
			ErrDuplicateNodeID, c.Other.Addr, c.Other.Meta.APIAddr, c.Other.Name)
	}
	return fmt.Errorf("%w: node_name %q is used by the live member %s at %s (peer API %s); node names must be unique. "+
		"The node started later stops: give it another node_name (config key node_name) and start it again",
		ErrDuplicateNodeName, c.Other.Meta.Name, c.Other.Name, c.Other.Addr, c.Other.Meta.APIAddr)
}
