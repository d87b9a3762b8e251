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

// eventBuffer is the capacity of the Events channel.
const eventBuffer = 256

// memberTable is the member list kept from memberlist's events, plus the
// event channel, the force-left names and the identity clashes seen.
// memberlist calls the notify methods from its own goroutines while
// holding its node lock, so they must never block and never call back
// into memberlist.
type memberTable struct {
	log *slog.Logger

	// Set before memberlist starts, then only read (selfName changes
	// under mu).
	self    string        // this node's gossip name (its node ID)
	deadTTL time.Duration // MembershipConfig.DeadMemberReapTime
	leftTTL time.Duration // MembershipConfig.LeftMemberReapTime

	mu       sync.Mutex
	selfName string // this node's NodeMeta.Name
	members  map[string]Member
	// forgotten holds the names force-left (here or by a peer's
	// broadcast) and when: a later report of them as dead or left is
	// dropped rather than listed, until they come back alive or deadTTL
	// passes.
	forgotten map[string]time.Time
	clashes   map[string]IdentityClash // by kind and address, until takeClashes
	// clashLogged is when each clash (kind and address) was last logged.
	clashLogged map[string]time.Time
	events      chan MemberEvent
	closed      bool // events is closed; set by close

	size    atomic.Int32  // len(members), for the broadcast queue without a lock
	clashCh chan struct{} // signalled (never blocking) when a clash is recorded
	dropped atomic.Uint64
}

func newMemberTable(log *slog.Logger) *memberTable {
	return &memberTable{
		log:         log,
		deadTTL:     DefaultDeadMemberReapTime,
		leftTTL:     DefaultLeftMemberReapTime,
		members:     make(map[string]Member),
		forgotten:   make(map[string]time.Time),
		clashes:     make(map[string]IdentityClash),
		clashLogged: make(map[string]time.Time),
		events:      make(chan MemberEvent, eventBuffer),
		clashCh:     make(chan struct{}, 1),
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
	if _, gone := t.forgotten[n.Name]; gone {
		if status == StatusDead || status == StatusLeft {
			// Force-left: its death (reported late here) stays unlisted.
			t.deleteLocked(n.Name)
			return
		}
		delete(t.forgotten, n.Name) // it came back: list it again
		t.log.Info("gossip: a force-left member is alive again; listing it", "member", n.Name, "addr", n.Address())
	}
	old, known := t.members[n.Name]
	since := now
	if known && old.Status == status {
		since = old.Since
	}
	m := Member{Name: n.Name, Addr: n.Address(), Meta: meta, Status: status, Since: since}
	t.members[n.Name] = m
	t.size.Store(int32(len(t.members)))
	if status == StatusAlive {
		t.checkNameLocked(m)
	}
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

// deleteLocked removes name from the list.
func (t *memberTable) deleteLocked(name string) {
	delete(t.members, name)
	t.size.Store(int32(len(t.members)))
}

// pruneLocked forgets members that left more than leftTTL ago or died
// more than deadTTL ago, and force-leave marks older than deadTTL.
func (t *memberTable) pruneLocked(now time.Time) {
	for name, m := range t.members {
		switch {
		case m.Status == StatusLeft && now.Sub(m.Since) > t.leftTTL,
			m.Status == StatusDead && now.Sub(m.Since) > t.deadTTL:
			t.deleteLocked(name)
		}
	}
	for name, at := range t.forgotten {
		if now.Sub(at) > t.deadTTL {
			delete(t.forgotten, name)
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

// raftAddr returns the Raft address the member name announces, while
// it is alive.
func (t *memberTable) raftAddr(name string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[name]
	if !ok || m.Status != StatusAlive || m.Meta.RaftAddr == "" {
		return "", false
	}
	return m.Meta.RaftAddr, true
}

// forget removes name from the list and remembers it as force-left, so a
// later report of its death does not list it again. Unless remote (a
// peer's broadcast, which only marks), it refuses a member this node sees
// alive or leaving. It reports whether name was listed and whether it was
// marked already.
func (t *memberTable) forget(name string, remote bool) (listed, marked bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, listed := t.members[name]
	if name == t.self || listed && (m.Status == StatusAlive || m.Status == StatusLeaving) {
		if !remote {
			return listed, false, &MemberAliveError{Member: m}
		}
		if name == t.self {
			return listed, false, nil // a peer thinks this node gone; gossip refutes it
		}
	}
	_, marked = t.forgotten[name]
	t.forgotten[name] = time.Now()
	if listed && m.Status != StatusAlive && m.Status != StatusLeaving {
		t.deleteLocked(name)
		m.Status, m.Since = StatusLeft, time.Now()
		t.sendLocked(MemberEvent{Type: EventLeave, Member: m})
	}
	return listed, marked, nil
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
