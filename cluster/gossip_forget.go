package cluster

import (
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// userMsgForget is the first byte of the one gossip user message Gojinn
// sends: "stop listing the member named in the rest" (force-leave). Other
// first bytes are ignored, so a later message type does not confuse this
// version.
const userMsgForget = 1

// metaDelegate hands memberlist the local node's encoded meta and carries
// force-leave broadcasts. Replicated state goes through Raft, never
// gossip; LocalState and MergeRemoteState are unused.
type metaDelegate struct {
	meta  atomic.Pointer[[]byte]
	table *memberTable
	queue *memberlist.TransmitLimitedQueue
	log   *slog.Logger
}

var _ memberlist.Delegate = (*metaDelegate)(nil)

// newMetaDelegate returns the delegate for t, retransmitting each
// broadcast retransmitMult times the log of the member count, as
// memberlist does its own.
func newMetaDelegate(t *memberTable, retransmitMult int, log *slog.Logger) *metaDelegate {
	return &metaDelegate{table: t, log: log, queue: &memberlist.TransmitLimitedQueue{
		// Without a lock: memberlist may ask while holding its node lock.
		NumNodes:       func() int { return max(int(t.size.Load()), 1) },
		RetransmitMult: retransmitMult,
	}}
}

// NodeMeta implements memberlist.Delegate. The meta was checked against
// the limit before it was stored, so it always fits.
func (d *metaDelegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return nil // unreachable: validateMeta keeps it within MetaMaxSize
	}
	return b
}

// NotifyMsg implements memberlist.Delegate: a peer's force-leave. The
// member is dropped here too (or, if this node still sees it alive, marked
// so that its death is not listed) and the message passed on once, so it
// spreads like memberlist's own broadcasts.
func (d *metaDelegate) NotifyMsg(b []byte) {
	if len(b) < 2 || b[0] != userMsgForget {
		return
	}
	name := string(b[1:])
	if validateNodeID(name) != nil {
		d.log.Debug("gossip: ignoring a force-leave message with an invalid member name")
		return
	}
	listed, marked, _ := d.table.forget(name, true) // remote: never refused
	if marked {
		return // seen before: already passed on
	}
	d.queueForget(name)
	d.log.Info("gossip: a peer force-left a member; no longer listing it", "member", name, "was_listed", listed)
}

// GetBroadcasts implements memberlist.Delegate.
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate; unused.
func (d *metaDelegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate; unused.
func (d *metaDelegate) MergeRemoteState([]byte, bool) {}

// queueForget queues the force-leave broadcast for name.
func (d *metaDelegate) queueForget(name string) {
	msg := make([]byte, 0, 1+len(name))
	msg = append(msg, userMsgForget)
	msg = append(msg, name...)
	d.queue.QueueBroadcast(forgetBroadcast{name: name, msg: msg})
}

// forgetBroadcast is a force-leave message; a newer one for the same
// member replaces it in the queue.
type forgetBroadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = forgetBroadcast{}

// Name implements memberlist.NamedBroadcast.
func (b forgetBroadcast) Name() string { return "forget/" + b.name }

// Invalidates implements memberlist.Broadcast; the queue matches by Name.
func (b forgetBroadcast) Invalidates(memberlist.Broadcast) bool { return false }

// Message implements memberlist.Broadcast.
func (b forgetBroadcast) Message() []byte { return b.msg }

// Finished implements memberlist.Broadcast.
func (b forgetBroadcast) Finished() {}
