package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// servableCallTimeout bounds one readiness question to one member. A
// member whose packets are dropped would otherwise hold its question (and
// with a sequential wait, every member after it) until the deploy's
// deadline.
const servableCallTimeout = 3 * time.Second

// servableBackoff is the first pause before a member is asked again; it
// doubles after each unanswered question up to servableMaxBackoff. A
// member that answers "not loaded yet" is asked again after the first
// pause.
const (
	servableBackoff    = 100 * time.Millisecond
	servableMaxBackoff = time.Second
)

// servableRecheck is how often the wait re-reads gossip membership, so a
// member gossip declares dead or left stops being waited for even while a
// question to it is still in flight.
const servableRecheck = 100 * time.Millisecond

// readyAnswer is one member's answer to one readiness question.
type readyAnswer struct {
	id  string
	st  ReadyState
	err error
}

// memberWait is what the wait knows about one member that has not
// confirmed yet.
type memberWait struct {
	asking  bool          // a question is in flight
	next    time.Time     // when to ask again
	backoff time.Duration // the pause after the next unanswered question
	last    string        // why it has not confirmed, for the error
}

// waitServable waits until every live member serves name at version
// (local included) and names the nodes that do not when ctx ends or one
// fails to load it.
//
// Members are asked concurrently, each question bounded by
// servableCallTimeout and repeated with a backoff until ctx ends. The
// member list is re-read every servableRecheck: a member that gossip
// reports dead or left is no longer waited for (logged), one that joins
// is. A member reporting that the version failed to load ends the wait at
// once with ErrNotServable. When ctx ends, the error names each member
// that has not confirmed with its last answer and wraps context.Cause(ctx).
// Every goroutine it starts has ended when it returns.
func (a *Agent) waitServable(ctx context.Context, name string, version int64) error {
	if rec := a.rec.Load(); rec != nil {
		if err := rec.WaitReady(ctx, name, version); err != nil {
			return err
		}
	}
	self := a.store.node.ID()
	qctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, so run first)
	defer cancel()
	answers := make(chan readyAnswer)
	ask := func(id, url string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, ccancel := context.WithTimeout(qctx, servableCallTimeout)
			st, err := a.client.Ready(cctx, url, name, version)
			if err != nil && cctx.Err() != nil && qctx.Err() == nil {
				err = fmt.Errorf("no answer within %v", servableCallTimeout)
			}
			ccancel()
			select {
			case answers <- readyAnswer{id: id, st: st, err: err}:
			case <-qctx.Done():
			}
		}()
	}

	waiting := map[string]*memberWait{} // live members not confirmed yet
	confirmed := map[string]bool{}
	tick := time.NewTicker(servableRecheck)
	defer tick.Stop()
	for {
		now := time.Now()
		live := map[string]bool{}
		for _, m := range a.members.Members() {
			if m.Name == self || confirmed[m.Name] {
				continue
			}
			if m.Status != StatusAlive {
				if _, ok := waiting[m.Name]; ok {
					delete(waiting, m.Name)
					a.log.Warn("not waiting for a member to serve the version: gossip reports it "+string(m.Status),
						"node", m.Name, "function", name, "version", version)
				}
				continue
			}
			live[m.Name] = true
			w := waiting[m.Name]
			if w == nil {
				w = &memberWait{backoff: servableBackoff, last: "not asked yet"}
				waiting[m.Name] = w
			}
			if w.asking || now.Before(w.next) {
				continue
			}
			url, ok := a.peers.PeerURL(m.Name)
			if !ok {
				w.last, w.next = "its peer API address is not known yet", now.Add(servableBackoff)
				continue
			}
			w.asking = true
			ask(m.Name, url)
		}
		for id := range waiting {
			if !live[id] { // gone from the member list altogether
				delete(waiting, id)
				a.log.Warn("not waiting for a member to serve the version: gossip no longer lists it",
					"node", id, "function", name, "version", version)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return notServableYet(ctx, name, version, waiting)
		case <-tick.C:
		case ans := <-answers:
			w := waiting[ans.id]
			if w == nil {
				continue // confirmed or no longer waited for meanwhile
			}
			w.asking = false
			switch {
			case ans.err != nil:
				w.last, w.next = ans.err.Error(), time.Now().Add(w.backoff)
				w.backoff = min(2*w.backoff, servableMaxBackoff)
			case ans.st.State == "failed":
				return fmt.Errorf("%w: %s version %d failed on %s", ErrNotServable, name, version, ans.id+": "+ans.st.Reason)
			case ans.st.State == "ready":
				delete(waiting, ans.id)
				confirmed[ans.id] = true
			default:
				w.last = "not loaded yet"
				if ans.st.Reason != "" {
					w.last += ": " + ans.st.Reason
				}
				w.next, w.backoff = time.Now().Add(servableBackoff), servableBackoff
			}
		}
	}
}

// notServableYet is waitServable's error once ctx ended: every member in
// waiting (never empty) with the reason it has not confirmed.
func notServableYet(ctx context.Context, name string, version int64, waiting map[string]*memberWait) error {
	ids := make([]string, 0, len(waiting))
	for id := range waiting {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		w := waiting[id]
		last := w.last
		if w.asking && last == "not asked yet" {
			last = "no answer before the deadline"
		}
		parts[i] = id + " (" + last + ")"
	}
	return fmt.Errorf("%s version %d is not servable yet on: %s: %w", name, version, strings.Join(parts, "; "), context.Cause(ctx))
}
