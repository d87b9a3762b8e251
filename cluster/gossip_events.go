package cluster

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberStatus is what this node believes about a member.
type MemberStatus string

// Member statuses. memberlist does not report suspicion through its API,
// so a member it suspects stays StatusAlive until it is declared dead.
const (
	// StatusAlive: the member answers probes (or is not yet declared dead).
	StatusAlive MemberStatus = "alive"
	// StatusLeaving: the member announced a graceful leave that has not
	// finished yet.
	StatusLeaving MemberStatus = "leaving"
	// StatusLeft: the member left gracefully (Membership.Leave).
	StatusLeft MemberStatus = "left"
	// StatusDead: the member stopped answering and the cluster declared
	// it dead (crash, kill, Shutdown without Leave, partition).
	StatusDead MemberStatus = "dead"
)

// Member is one node as this node sees it.
type Member struct {
	// Name is the member's unique node name (its Raft node ID).
	Name string
	// Addr is the member's gossip host:port.
	Addr string
	// Meta is what the member announced; zero when its meta could not be
	// decoded (logged once per change).
	Meta NodeMeta
	// Status is alive, leaving, left or dead.
	Status MemberStatus
	// Since is when this node last saw Status change.
	Since time.Time
}

// EventType says what happened to a member.
type EventType string

// Event types of MemberEvent.
const (
	// EventJoin: a member joined, or came back after it left or died.
	EventJoin EventType = "join"
	// EventUpdate: a member changed its meta or address, or announced
	// that it is leaving.
	EventUpdate EventType = "update"
	// EventLeave: a member left gracefully.
	EventLeave EventType = "leave"
	// EventFail: a member was declared dead.
	EventFail EventType = "fail"
)

// MemberEvent is one change of membership, as Membership.Events delivers it.
type MemberEvent struct {
	Type   EventType
	Member Member
}

// Defaults of the member table and event channel.
const (
	// eventBuffer is the capacity of the Events channel.
	eventBuffer = 256
	// tombstoneTTL is how long left and dead members stay in Members (as
	// Serf's tombstone timeout): long enough for operators to see who
	// went away, short enough that churn does not grow the table forever.
	tombstoneTTL = 24 * time.Hour
)

// memberTable is the member list kept from memberlist's events, plus the
// event channel. memberlist calls the notify methods from its own
// goroutines while holding its node lock, so they must never block and
// never call back into memberlist.
type memberTable struct {
	log *slog.Logger

	mu      sync.Mutex
	members map[string]Member
	events  chan MemberEvent
	closed  bool // events is closed; set by close

	dropped atomic.Uint64
}

func newMemberTable(log *slog.Logger) *memberTable {
	return &memberTable{
		log:     log,
		members: make(map[string]Member),
		events:  make(chan MemberEvent, eventBuffer),
	}
}

var _ memberlist.EventDelegate = (*memberTable)(nil)

// NotifyJoin implements memberlist.EventDelegate.
func (t *memberTable) NotifyJoin(n *memberlist.Node) { t.record(n, EventJoin) }

// NotifyUpdate implements memberlist.EventDelegate.
func (t *memberTable) NotifyUpdate(n *memberlist.Node) { t.record(n, EventUpdate) }

// NotifyLeave implements memberlist.EventDelegate. memberlist calls it for
// both a graceful leave and a death; the leave mark in the node's last
// meta tells them apart.
func (t *memberTable) NotifyLeave(n *memberlist.Node) { t.record(n, EventLeave) }

func (t *memberTable) record(n *memberlist.Node, ev EventType) {
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		t.log.Warn("gossip: undecodable meta from a member; is it running another gojinn-node version?",
			"member", n.Name, "addr", n.Address(), "err", err)
	}
	status := StatusAlive
	switch {
	case ev == EventLeave && leaving:
		status = StatusLeft
	case ev == EventLeave:
		status, ev = StatusDead, EventFail
	case leaving:
		status = StatusLeaving
	}
	now := time.Now()

	t.mu.Lock()
	defer t.mu.Unlock()
	old, known := t.members[n.Name]
	since := now
	if known && old.Status == status {
		since = old.Since
	}
	m := Member{Name: n.Name, Addr: n.Address(), Meta: meta, Status: status, Since: since}
	t.members[n.Name] = m
	t.pruneLocked(now)
	t.sendLocked(MemberEvent{Type: ev, Member: m})
}

// sendLocked queues ev without blocking: when the channel is full the
// oldest event is dropped and counted.
func (t *memberTable) sendLocked(ev MemberEvent) {
	if t.closed {
		return
	}
	for {
		select {
		case t.events <- ev:
			return
		default:
		}
		select {
		case <-t.events:
			if t.dropped.Add(1) == 1 {
				t.log.Warn("gossip: membership events are not read fast enough; dropping the oldest (counted in DroppedEvents)")
			}
		default: // the consumer just made room
		}
	}
}

// pruneLocked forgets members that left or died more than tombstoneTTL ago.
func (t *memberTable) pruneLocked(now time.Time) {
	for name, m := range t.members {
		if (m.Status == StatusLeft || m.Status == StatusDead) && now.Sub(m.Since) > tombstoneTTL {
			delete(t.members, name)
		}
	}
}

// list returns the members sorted by name.
func (t *memberTable) list() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(time.Now())
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// close closes the event channel; later notifications are dropped.
func (t *memberTable) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.events)
	}
}

// conflictLogger explains memberlist's name conflicts, the usual cause of
// which is a node restarting under its name with a new address.
type conflictLogger struct {
	log     *slog.Logger
	reclaim time.Duration
}

var _ memberlist.ConflictDelegate = conflictLogger{}

// NotifyConflict implements memberlist.ConflictDelegate.
func (c conflictLogger) NotifyConflict(existing, other *memberlist.Node) {
	c.log.Warn("gossip: two addresses claim one node name; the new one is refused until the old one is declared dead and DeadNodeReclaimTime has passed (a node that restarted with a new address gets in then; two live nodes sharing a name never will: give each a unique name)",
		"member", existing.Name, "known_addr", existing.Address(), "claiming_addr", other.Address(),
		"dead_node_reclaim_time", c.reclaim.String())
}

// metaDelegate hands memberlist the local node's encoded meta. The other
// memberlist.Delegate methods are unused: Gojinn sends no user messages
// over gossip (replicated state goes through Raft).
type metaDelegate struct {
	meta atomic.Pointer[[]byte]
}

var _ memberlist.Delegate = (*metaDelegate)(nil)

// NodeMeta implements memberlist.Delegate. The meta was checked against
// the limit before it was stored, so it always fits.
func (d *metaDelegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return nil // unreachable: validateMeta keeps it within MetaMaxSize
	}
	return b
}

// NotifyMsg implements memberlist.Delegate; unused.
func (d *metaDelegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate; unused.
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate; unused.
func (d *metaDelegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate; unused.
func (d *metaDelegate) MergeRemoteState([]byte, bool) {}
