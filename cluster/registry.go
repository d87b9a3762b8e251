package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// Store is the replicated function registry as the admin API uses it: a
// Raft Node whose FSM is a storage.Registry (refusing route conflicts with
// CheckRoutes), plus the node's blob store. Writes go through Raft (on the
// leader); reads come from the local registry snapshot without locking,
// and include this node's own committed writes once they return. Errors
// wrap the storage sentinels (ErrInvalid, ErrBlobNotFound,
// ErrFunctionNotFound, ErrVersionNotFound, ErrRouteConflict) or
// ErrNotLeader/ErrUnavailable.
type Store struct {
	node  *Node
	reg   *storage.Registry
	blobs *storage.Blobs
	kv    *kvRuntime // KV limits and the leader's expiry loop (kv_expire.go)

	// Set by EnableForwarding before use: writes on a follower go to
	// the leader's peer API.
	peerClient *PeerClient
	peers      PeerResolver
}

// EnableForwarding makes writes proposed on a follower go to the leader
// through its peer API. Call it before the store serves requests.
func (s *Store) EnableForwarding(c *PeerClient, peers PeerResolver) {
	s.peerClient, s.peers = c, peers
}

var _ Registry = (*Store)(nil)

// OpenStore opens the blob store under cfg.DataDir and a Raft node whose
// FSM is a new storage.Registry (leave cfg.FSM nil), and returns once the
// node leads and its registry is up to date, as Open does.
func OpenStore(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.FSM != nil {
		return nil, fmt.Errorf("cluster: OpenStore supplies the FSM itself; leave Config.FSM nil: %w", storage.ErrInvalid)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("cluster config: DataDir is required: %w", storage.ErrInvalid)
	}
	reg := storage.NewRegistry()
	// Before Raft replays anything: the commit, not the API's pre-check,
	// decides route conflicts, identically on every node.
	reg.SetRouteCheck(CheckRoutes)
	cfg.FSM = reg
	node, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Only now, with raft.db locked: opening the blob store removes the
	// leftovers of unfinished uploads, which would be the uploads under
	// way of another node still running on this data directory.
	blobs, err := storage.OpenBlobs(cfg.DataDir)
	if err != nil {
		_ = node.Close()
		return nil, err
	}
	s := &Store{node: node, reg: reg, blobs: blobs}
	s.kv = newKVRuntime(s)
	return s, nil
}

// Close stops the KV expiry loop and closes the Raft node. The blob store
// holds no open files.
func (s *Store) Close() error {
	s.kv.stop() // no purge proposals into a closing node
	return s.node.Close()
}

// Node returns the Raft node, for status and leadership checks.
func (s *Store) Node() *Node { return s.node }

// Deploy proposes a new version of name and returns it once committed. The
// module must already be in the blob store (ErrBlobNotFound otherwise);
// spec.Size 0 means the stored module's length, any other value must
// match it.
func (s *Store) Deploy(ctx context.Context, name string, spec storage.Spec) (storage.Version, error) {
	if err := storage.ValidateName(name); err != nil {
		return storage.Version{}, err
	}
	if err := storage.ValidateSHA256(spec.SHA256); err != nil {
		return storage.Version{}, fmt.Errorf("deploy %q: spec.sha256: %w", name, err)
	}
	size, err := s.blobs.Stat(spec.SHA256)
	if err != nil {
		return storage.Version{}, fmt.Errorf("deploy %q: %w", name, err)
	}
	switch spec.Size {
	case 0:
		spec.Size = size
	case size:
	default:
		return storage.Version{}, fmt.Errorf("deploy %q: %w: spec.size %d does not match the %d bytes stored under %s", name, storage.ErrInvalid, spec.Size, size, spec.SHA256)
	}
	if err := storage.ValidateSpec(name, spec); err != nil {
		return storage.Version{}, fmt.Errorf("deploy %q: %w", name, err)
	}
	res, err := s.propose(ctx, storage.Command{Op: storage.OpDeploy, Name: name, Spec: &spec})
	return res.Version, err
}

// Rollback makes version to of name active again (to == 0: the version
// active before the current one; rolling back twice returns to where it
// started) and returns the now active version.
func (s *Store) Rollback(ctx context.Context, name string, to int64) (storage.Version, error) {
	res, err := s.propose(ctx, storage.Command{Op: storage.OpRollback, Name: name, Version: to})
	return res.Version, err
}

// Remove deletes name and its versions. Version numbers are not reused by
// a later deploy of the same name.
func (s *Store) Remove(ctx context.Context, name string) error {
	_, err := s.propose(ctx, storage.Command{Op: storage.OpRemove, Name: name})
	return err
}

// propose encodes c (stamped with the leader's clock) and applies it
// through Raft.
func (s *Store) propose(ctx context.Context, c storage.Command) (storage.ApplyResult, error) {
	c.At = time.Now().UTC()
	b, err := storage.EncodeCommand(c)
	if err != nil {
		return storage.ApplyResult{}, fmt.Errorf("%s %q: %w", c.Op, c.Name, err)
	}
	resp, err := s.apply(ctx, b)
	if err != nil {
		return storage.ApplyResult{}, fmt.Errorf("%s %q: %w", c.Op, c.Name, err)
	}
	res, ok := resp.(storage.ApplyResult)
	if !ok {
		return storage.ApplyResult{}, fmt.Errorf("%s %q: the state machine answered %T, not an ApplyResult", c.Op, c.Name, resp)
	}
	if res.Err != nil {
		return res, res.Err
	}
	s.awaitLocal(ctx, res.Index, "op", c.Op, "function", c.Name)
	return res, nil
}

// awaitLocal waits until this node has applied the command at index,
// which a follower forwarded to the leader: then this node's reads, and
// the admin API's watch for a newer version during a readiness wait
// (which must not mistake the version a rollback replaces for one that
// overtook it), start from a state that includes it. Registry commands,
// KV writes (proposeKV) and restores (forwardRestore) wait. The command
// is committed either way, so a node that falls behind (partitioned right
// after forwarding) only logs, with what (slog key-value pairs) naming
// the command; index 0 (a leader of an older build) skips the wait. The
// wait is bounded by ctx, or the node's ApplyTimeout without a deadline.
func (s *Store) awaitLocal(ctx context.Context, index uint64, what ...any) {
	if index == 0 || s.reg.State().Applied() >= index {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.node.timeout(ctx))
	defer cancel()
	if err := s.waitApplied(ctx, index); err != nil {
		s.node.log.Warn("a committed command is not applied on this node yet; its reads trail the leader",
			append(what, "index", index, "err", err)...)
	}
}

// apply proposes b on this node when it leads, else forwards it to the
// leader. While there is no leader (an election), it retries until ctx's
// deadline or the node's ApplyTimeout: leadership changes cost clients
// latency, not errors. It retries only attempts that certainly applied
// nothing (no leader, not the leader, a leader that refused or could not
// be reached). An attempt whose outcome is unknown (leadership lost
// mid-commit, a forwarded write whose answer was lost) fails with
// ErrUnknownOutcome: a retry could apply a put twice, over a newer write,
// or fail a create-only compare-and-set against the caller's own write.
func (s *Store) apply(ctx context.Context, b []byte) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.node.timeout(ctx))
	defer cancel()
	for {
		resp, err := s.node.Apply(ctx, b)
		if err == nil {
			return resp, nil
		}
		if outcomeUnknown(err) {
			return nil, unknownOutcome(err)
		}
		var nl *NotLeaderError
		if s.peerClient != nil && errors.As(err, &nl) && nl.LeaderID != "" && nl.LeaderID != s.node.ID() {
			if url, ok := s.peers.PeerURL(nl.LeaderID); ok {
				// One attempt gets a slice of the budget: a leader that
				// vanished (partitioned, killed) must not eat all of it
				// while a new one is elected.
				actx, acancel := context.WithTimeout(ctx, forwardAttemptTimeout)
				res, ferr := s.peerClient.Apply(actx, url, b)
				acancel()
				if ferr == nil {
					return res, nil
				}
				if outcomeUnknown(ferr) {
					return nil, ferr
				}
				err = ferr
			}
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) || s.node.isClosed() {
			return nil, err // a closed node will not see a leader again
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader accepted the write in time: %w", err)
		case <-time.After(retryBackoff):
		}
	}
}

// catchUp returns once this node's registry includes every command
// committed before the call: a Barrier on the leader, a read index from
// the leader on a follower (readindex.go). Reconciler.WaitReady uses it
// before it trusts that another active version overtook the awaited one.
func (s *Store) catchUp(ctx context.Context) error {
	if s.node.IsLeader() {
		return s.node.Barrier(ctx)
	}
	return s.followerReadBarrier(ctx)
}

// forwardAttemptTimeout bounds one forwarded write; the retry loop asks
// Raft for the current leader before the next attempt.
const forwardAttemptTimeout = 3 * time.Second

// State returns the local registry snapshot.
func (s *Store) State() *storage.State { return s.reg.State() }

// Functions returns every registered function, sorted by name, from local
// state.
func (s *Store) Functions() []storage.Function { return s.reg.State().Functions() }

// Function returns one function from local state.
func (s *Store) Function(name string) (storage.Function, bool) {
	return s.reg.State().Function(name)
}

// Blobs returns the node's content-addressed module store.
func (s *Store) Blobs() *storage.Blobs { return s.blobs }

// Subscribe returns a channel that receives a value after every registry
// change, and a function that ends the subscription (see
// storage.Registry.Subscribe).
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.reg.Subscribe() }

// Status describes the node, with Functions filled; Version is the
// caller's to set.
func (s *Store) Status() Status {
	st := s.node.Status()
	st.Functions = s.reg.State().Len()
	return st
}
