package storage

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// ApplyResult is what Registry.Apply returns for one command: the version
// that is active after a deploy or rollback, or the error that made the
// command a no-op. Errors are results, not failures of the state machine:
// every node rejects the same command the same way.
type ApplyResult struct {
	// Version is the deployed or now active version; zero for a remove and
	// on error.
	Version Version
	// Err wraps ErrInvalid, ErrFunctionNotFound, ErrVersionNotFound or
	// ErrRouteConflict, or for a KV command ErrKVQuota, ErrKVTooLarge or a
	// *KVConflictError.
	Err error
	// Index is the Raft index a registry command applied at (also when it
	// failed); zero for KV commands. A node that forwarded the command
	// waits until it has applied this index itself before answering.
	Index uint64
	// KV is a KV command's result.
	KV KVResult
	// Batch holds, for a batch of KV commands (EncodeKVBatch), each
	// command's result in order; Err is then set only when the batch
	// itself is malformed (and nothing applied). A command's error fails
	// that command alone.
	Batch []ApplyResult
}

// entry is the registry's record of one name. It survives a remove (with a
// nil fn) so version numbers are never reused.
type entry struct {
	// fn is the registered function, nil after a remove.
	fn *Function
	// lastVersion is the highest version ever assigned to the name.
	lastVersion int64
	// previous is the version that was active before the current one
	// became active (0: none); rollback to 0 goes there.
	previous int64
}

// State is an immutable snapshot of the registry. Each applied command
// publishes a new State that shares unchanged functions with the old one,
// so readers never lock and never see a half-applied command.
//
// Functions and their Versions slices returned by a State are shared with
// every other reader: treat them as read-only.
type State struct {
	index uint64
	// applied is the Raft index of the last command of any kind (registry
	// or KV) applied to this state; see Applied.
	applied uint64
	entries map[string]*entry
	// sorted holds the registered functions by name, built once per State.
	sorted []*Function
	// kv holds the KV namespaces by name (kv.go).
	kv kvTree[*kvNamespace]
}

var emptyState = &State{entries: map[string]*entry{}}

// Index is the Raft index of the last function registry command applied to
// this state (0 for the empty registry). Raft entries that are not registry
// commands, such as configuration changes and KV commands, do not advance
// it: readers that wait for it (the reconciler) care about functions only.
func (s *State) Index() uint64 { return s.index }

// Applied is the Raft index of the last command of any kind (registry or
// KV) applied to this state, carried through snapshots. Raft's own
// AppliedIndex counts entries handed to the state machine, which may not
// have applied them yet; a reader that must see everything up to an index
// (a linearizable read on a follower) waits for Applied.
func (s *State) Applied() uint64 { return s.applied }

// Len is the number of registered functions.
func (s *State) Len() int { return len(s.sorted) }

// Function returns the registered function name.
func (s *State) Function(name string) (Function, bool) {
	e := s.entries[name]
	if e == nil || e.fn == nil {
		return Function{}, false
	}
	return *e.fn, true
}

// Functions returns every registered function, sorted by name.
func (s *State) Functions() []Function {
	out := make([]Function, len(s.sorted))
	for i, f := range s.sorted {
		out[i] = *f
	}
	return out
}

// LiveBlobs returns the sha256 of every version of every registered
// function: the blobs garbage collection must keep.
func (s *State) LiveBlobs() map[string]struct{} {
	live := make(map[string]struct{})
	for _, f := range s.sorted {
		for _, v := range f.Versions {
			live[v.SHA256] = struct{}{}
		}
	}
	return live
}

// with returns a copy of s with entries replaced (nil: unchanged) and the
// index set; the sorted list is rebuilt only when entries change.
func (s *State) with(entries map[string]*entry, index uint64) *State {
	if entries == nil {
		return &State{index: index, applied: max(s.applied, index), entries: s.entries, sorted: s.sorted, kv: s.kv}
	}
	next := &State{index: index, applied: max(s.applied, index), entries: entries, kv: s.kv}
	for _, e := range entries {
		if e.fn != nil {
			next.sorted = append(next.sorted, e.fn)
		}
	}
	slices.SortFunc(next.sorted, func(a, b *Function) int { return strings.Compare(a.Name, b.Name) })
	return next
}

// Registry is the function registry as a Raft state machine (raft.FSM).
// Raft calls Apply, Snapshot and Restore from one goroutine; readers call
// State from any goroutine without locking.
//
// Locks: writeMu serializes Apply and Restore (Raft already does; the lock
// makes direct callers such as tests safe too) and is taken before subMu,
// which guards the subscriber set. Neither is held while a reader runs.
type Registry struct {
	state   atomic.Pointer[State]
	writeMu sync.Mutex
	// routeCheck refuses deploys and rollbacks whose routes conflict
	// (SetRouteCheck); guarded by writeMu.
	routeCheck RouteCheck

	subMu sync.Mutex
	subs  map[*subscriber]struct{}
}

type subscriber struct{ ch chan struct{} }

var _ raft.FSM = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{subs: make(map[*subscriber]struct{})}
	r.state.Store(emptyState)
	return r
}

// State returns the current snapshot of the registry.
func (r *Registry) State() *State { return r.state.Load() }

// Subscribe returns a channel that receives a value after every Apply of a
// registry command and every Restore (KV writes do not notify: they would
// wake route-table rebuilds for nothing), and a function that ends the subscription. The channel has a
// buffer of one and sends never block, so a slow reader sees one pending
// notification for any number of changes and must read State() to learn
// what changed. The channel is not closed by unsubscribe.
func (r *Registry) Subscribe() (<-chan struct{}, func()) {
	s := &subscriber{ch: make(chan struct{}, 1)}
	r.subMu.Lock()
	r.subs[s] = struct{}{}
	r.subMu.Unlock()
	return s.ch, func() {
		r.subMu.Lock()
		delete(r.subs, s)
		r.subMu.Unlock()
	}
}

func (r *Registry) notify() {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	for s := range r.subs {
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}

// Apply implements raft.FSM. It decodes the entry as KV commands (tagged,
// see kv_codec.go) or a registry Command and applies it, returning an
// ApplyResult (never a nil value and never a panic, for any
// bytes).
func (r *Registry) Apply(l *raft.Log) any {
	return r.ApplyCommand(l.Index, l.Data)
}

// ApplyCommand applies an encoded Command, a KV command from
// EncodeKVCommand (or its old JSON form) or a batch from EncodeKVBatch, as
// the Raft entry at index. It is what Apply does; tests and tools may call
// it directly. KV commands change neither Index nor notify subscribers.
//
// Every command of a batch applies at the batch's index, so a put's
// version is that index: the batcher never puts two writes of one key in
// one batch, which keeps each key's versions strictly increasing.
func (r *Registry) ApplyCommand(index uint64, data []byte) ApplyResult {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	cur := r.state.Load()
	if IsKVBatch(data) {
		cmds, err := decodeKVBatch(data)
		if err != nil {
			return ApplyResult{Err: err}
		}
		next := *cur
		results := make([]ApplyResult, len(cmds))
		for i, c := range cmds {
			if IsKVBatch(c) || !IsKVCommand(c) {
				results[i].Err = fmt.Errorf("%w: a KV batch holds single KV commands only", ErrInvalid)
				continue
			}
			next.kv, results[i] = next.applyKV(index, c)
		}
		next.applied = max(next.applied, index)
		r.state.Store(&next)
		return ApplyResult{Batch: results}
	}
	if IsKVCommand(data) {
		kv, res := cur.applyKV(index, data)
		next := *cur
		next.kv = kv
		next.applied = max(next.applied, index)
		r.state.Store(&next)
		return res
	}
	var (
		res     ApplyResult
		entries map[string]*entry
	)
	cmd, err := DecodeCommand(data)
	if err == nil {
		entries, res = cur.apply(cmd, r.routeCheck)
	} else {
		res.Err = err
	}
	res.Index = index
	r.state.Store(cur.with(entries, index))
	r.notify()
	return res
}

// apply computes the effect of a validated command on s: the new entries
// map (nil when nothing changed) and the result. It must stay deterministic:
// no clock, no randomness, no map iteration order in the result. check
// (nil: none) refuses a deploy or rollback whose routes conflict with
// another function's active routes.
func (s *State) apply(c Command, check RouteCheck) (map[string]*entry, ApplyResult) {
	old := s.entries[c.Name]
	switch c.Op {
	case OpDeploy:
		if err := s.checkRoutes(check, c.Name, c.Spec.Routes); err != nil {
			return nil, ApplyResult{Err: fmt.Errorf("deploy of %q refused, nothing was deployed: %w", c.Name, err)}
		}
		var last int64
		var prev *Function
		if old != nil {
			last, prev = old.lastVersion, old.fn
		}
		v := Version{Version: last + 1, Spec: *c.Spec, DeployedAt: c.At}
		fn := &Function{Name: c.Name, Active: v.Version}
		e := &entry{fn: fn, lastVersion: v.Version}
		if prev != nil {
			// A fresh slice: the old one is shared with readers.
			fn.Versions = make([]Version, 0, len(prev.Versions)+1)
			fn.Versions = append(fn.Versions, prev.Versions...)
			e.previous = prev.Active
		}
		fn.Versions = append(fn.Versions, v)
		return s.put(c.Name, e), ApplyResult{Version: v}

	case OpRollback:
		if old == nil || old.fn == nil {
			return nil, ApplyResult{Err: fmt.Errorf("%w: cannot roll back %q: no such function", ErrFunctionNotFound, c.Name)}
		}
		to := c.Version
		if to == 0 {
			if old.previous == 0 {
				return nil, ApplyResult{Err: fmt.Errorf("%w: %q has no previous version to roll back to (active is %d); name a version", ErrVersionNotFound, c.Name, old.fn.Active)}
			}
			to = old.previous
		}
		v, ok := old.fn.FindVersion(to)
		if !ok {
			return nil, ApplyResult{Err: fmt.Errorf("%w: %q has no version %d (it keeps versions %d to %d; `gojinn-node functions versions %s` lists them)",
				ErrVersionNotFound, c.Name, to, old.fn.Versions[0].Version, old.fn.Versions[len(old.fn.Versions)-1].Version, c.Name)}
		}
		if to == old.fn.Active {
			return nil, ApplyResult{Version: v}
		}
		if err := s.checkRoutes(check, c.Name, v.Routes); err != nil {
			return nil, ApplyResult{Err: fmt.Errorf("rollback of %q to version %d refused, nothing was changed: %w", c.Name, to, err)}
		}
		fn := &Function{Name: c.Name, Active: to, Versions: old.fn.Versions}
		e := &entry{fn: fn, lastVersion: old.lastVersion, previous: old.fn.Active}
		return s.put(c.Name, e), ApplyResult{Version: v}

	case OpRemove:
		if old == nil || old.fn == nil {
			return nil, ApplyResult{Err: fmt.Errorf("%w: cannot remove %q: no such function", ErrFunctionNotFound, c.Name)}
		}
		return s.put(c.Name, &entry{lastVersion: old.lastVersion}), ApplyResult{}
	}
	// DecodeCommand validated Op; this is for callers that did not.
	return nil, ApplyResult{Err: fmt.Errorf("%w: unknown registry command %q", ErrInvalid, clip(c.Op))}
}

// put returns a copy of s.entries with name set to e.
func (s *State) put(name string, e *entry) map[string]*entry {
	m := maps.Clone(s.entries)
	if m == nil {
		m = make(map[string]*entry, 1)
	}
	m[name] = e
	return m
}
