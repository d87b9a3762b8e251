package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// DefaultKVExpireInterval is how often the leader purges expired keys.
const DefaultKVExpireInterval = 30 * time.Second

// maxKVTTL bounds a key's time to live, so its expiry stays in the range
// the FSM stores.
const maxKVTTL = 100 * 365 * 24 * time.Hour

// KVConfig configures a Store's KV store. Zero fields take the defaults.
type KVConfig struct {
	// Limits bound keys, values and keys per namespace. Zero fields take
	// storage.DefaultKVLimits (512 B keys, 1 MiB values, 100000 keys).
	Limits storage.KVLimits
	// ExpireInterval is how often the leader proposes a purge of expired
	// keys (reads hide them from the moment they expire). Default
	// DefaultKVExpireInterval (30 s).
	ExpireInterval time.Duration
}

// DefaultKVConfig returns the defaults.
func DefaultKVConfig() KVConfig {
	return KVConfig{Limits: storage.DefaultKVLimits(), ExpireInterval: DefaultKVExpireInterval}
}

// withDefaults fills zero fields.
func (c KVConfig) withDefaults() KVConfig {
	c.Limits = c.Limits.WithDefaults()
	if c.ExpireInterval == 0 {
		c.ExpireInterval = DefaultKVExpireInterval
	}
	return c
}

// Validate returns the first problem of c (after defaults).
func (c KVConfig) Validate() error {
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("cluster KV config: %w", err)
	}
	if c.ExpireInterval < time.Millisecond {
		return fmt.Errorf("cluster KV config: ExpireInterval %v must be at least 1ms: %w", c.ExpireInterval, storage.ErrInvalid)
	}
	return nil
}

// Consistency is how fresh a KV read must be.
type Consistency string

// Consistency levels of KV reads.
const (
	// ConsistencyLocal reads this node's state: fast, and possibly behind
	// the leader by the replication lag. The default.
	ConsistencyLocal Consistency = "local"
	// ConsistencyLinearizable reads on the leader after a Raft barrier:
	// the read sees every write acknowledged before it started. A
	// follower asks the leader for that index and waits to apply it
	// (readindex.go).
	ConsistencyLinearizable Consistency = "linearizable"
)

// ParseConsistency parses a consistency level; "" means local.
func ParseConsistency(s string) (Consistency, error) {
	switch Consistency(s) {
	case "", ConsistencyLocal:
		return ConsistencyLocal, nil
	case ConsistencyLinearizable:
		return ConsistencyLinearizable, nil
	}
	return "", fmt.Errorf("%w: consistency %q must be %q (default) or %q", storage.ErrInvalid, s, ConsistencyLocal, ConsistencyLinearizable)
}

// KVWriteOptions qualify a KV write.
type KVWriteOptions struct {
	// TTL > 0 makes a put's key expire TTL after the write is proposed;
	// zero means never. Deletes take none.
	TTL time.Duration
	// CAS, when set, makes the write conditional: it applies only if the
	// key's current version is *CAS, 0 meaning the key is absent (create
	// only). A mismatch fails with a *storage.KVConflictError.
	CAS *uint64
}

// KVLimits returns the limits this store enforces.
func (s *Store) KVLimits() storage.KVLimits { return s.kvConfig().Limits }

// KVGet returns key of namespace ns: storage.ErrKVNotFound when it does not
// exist or has expired by this node's clock. The entry's Value is shared
// with the replicated state: copy it before modifying it.
func (s *Store) KVGet(ctx context.Context, ns, key string, c Consistency) (_ storage.KVEntry, err error) {
	defer func() { s.node.kvMetrics.countOp(kvOpGet, err) }()
	if err := checkKVKey(ns, key, s.kvConfig().Limits); err != nil {
		// An empty key, or one with NUL, is never stored: say so rather
		// than "not found".
		return storage.KVEntry{}, fmt.Errorf("kv get: %w", err)
	}
	st, err := s.kvRead(ctx, c)
	if err != nil {
		return storage.KVEntry{}, fmt.Errorf("kv get %s/%q: %w", ns, key, err)
	}
	return st.KVGet(ns, key, time.Now())
}

// KVList returns a page of the keys of ns, in key order.
func (s *Store) KVList(ctx context.Context, ns string, opts storage.KVListOptions, c Consistency) (_ storage.KVPage, err error) {
	defer func() { s.node.kvMetrics.countOp(kvOpList, err) }()
	st, err := s.kvRead(ctx, c)
	if err != nil {
		return storage.KVPage{}, fmt.Errorf("kv list %s: %w", ns, err)
	}
	return st.KVList(ns, opts, time.Now()), nil
}

// KVNamespace describes ns from local state.
func (s *Store) KVNamespace(ns string) storage.KVNamespaceInfo { return s.reg.State().KVNamespace(ns) }

// KVCheckAccess returns nil when function fn may use namespace ns (its own,
// or shared with it), else an error wrapping storage.ErrKVForbidden. The
// runtime's KV host functions call it; the admin API may use any namespace.
func (s *Store) KVCheckAccess(fn, ns string) error { return s.reg.State().KVCheckAccess(fn, ns) }

// kvRead returns the state to read at consistency c.
func (s *Store) kvRead(ctx context.Context, c Consistency) (*storage.State, error) {
	switch c {
	case "", ConsistencyLocal:
	case ConsistencyLinearizable:
		// On the leader, a barrier commits an entry in this leader's term
		// and returns once the FSM applied everything before it: no
		// acknowledged write is missing from the state read next. A
		// follower gets that index from the leader and waits to apply it
		// (readindex.go).
		var err error
		if s.node.IsLeader() {
			err = s.node.Barrier(ctx)
		} else {
			err = s.followerReadBarrier(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("linearizable read: %w", err)
		}
	default:
		_, err := ParseConsistency(string(c))
		return nil, err
	}
	return s.reg.State(), nil
}

// KVPut sets key of namespace ns to value once committed, and returns its
// new version (the Raft index of the write).
func (s *Store) KVPut(ctx context.Context, ns, key string, value []byte, opts KVWriteOptions) (_ uint64, err error) {
	op := kvOpPut
	if opts.CAS != nil {
		op = kvOpCAS
	}
	defer func() { s.node.kvMetrics.countOp(op, err) }()
	cfg := s.kvConfig()
	if err := checkKVKey(ns, key, cfg.Limits); err != nil {
		return 0, fmt.Errorf("kv put: %w", err)
	}
	if len(value) > cfg.Limits.MaxValueBytes {
		return 0, fmt.Errorf("kv put %s/%q: %w: the value is %d bytes, more than the limit of %d", ns, key, storage.ErrKVTooLarge, len(value), cfg.Limits.MaxValueBytes)
	}
	if opts.TTL < 0 || opts.TTL > maxKVTTL {
		return 0, fmt.Errorf("kv put %s/%q: %w: ttl %v must be 0 (never expires) to %v", ns, key, storage.ErrInvalid, opts.TTL, maxKVTTL)
	}
	c := storage.KVCommand{Op: storage.OpKVPut, Namespace: ns, Key: key, Value: value, CAS: opts.CAS, MaxKeys: cfg.Limits.MaxKeys, MaxBytes: cfg.Limits.MaxBytes}
	c.Now = time.Now().UTC()
	if opts.TTL > 0 {
		c.ExpiresAt = c.Now.Add(opts.TTL)
	}
	res, err := s.proposeKV(ctx, c)
	return res.Version, err
}

// KVCAS sets key to value only if its current version is version (0: only
// if absent), and returns the new version; a mismatch fails with a
// *storage.KVConflictError carrying the current version.
func (s *Store) KVCAS(ctx context.Context, ns, key string, value []byte, version uint64, ttl time.Duration) (uint64, error) {
	return s.KVPut(ctx, ns, key, value, KVWriteOptions{TTL: ttl, CAS: &version})
}

// KVDelete deletes key of namespace ns once committed; deleting a missing
// key succeeds. opts.CAS makes it conditional.
func (s *Store) KVDelete(ctx context.Context, ns, key string, opts KVWriteOptions) (err error) {
	defer func() { s.node.kvMetrics.countOp(kvOpDelete, err) }()
	if err := checkKVKey(ns, key, s.kvConfig().Limits); err != nil {
		return fmt.Errorf("kv delete: %w", err)
	}
	if opts.TTL != 0 {
		return fmt.Errorf("kv delete %s/%q: %w: a delete takes no ttl", ns, key, storage.ErrInvalid)
	}
	_, err = s.proposeKV(ctx, storage.KVCommand{Op: storage.OpKVDelete, Namespace: ns, Key: key, CAS: opts.CAS, Now: time.Now().UTC()})
	return err
}

// KVShare replaces the list of functions, besides its owner, that may use
// namespace ns; an empty list makes it private again.
func (s *Store) KVShare(ctx context.Context, ns string, share []string) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return fmt.Errorf("kv share: %w", err)
	}
	if err := storage.ValidateKVShare(ns, share); err != nil {
		return fmt.Errorf("kv share %s: %w", ns, err)
	}
	_, err := s.proposeKV(ctx, storage.KVCommand{Op: storage.OpKVShare, Namespace: ns, Share: share, Now: time.Now().UTC()})
	return err
}

// KVExpire proposes a purge of every key expired at now and returns how
// many were deleted. The leader's expiry loop calls it.
func (s *Store) KVExpire(ctx context.Context, now time.Time) (int, error) {
	res, err := s.proposeKV(ctx, storage.KVCommand{Op: storage.OpKVExpire, Now: now.UTC()})
	return res.Deleted, err
}

// checkKVKey validates a namespace and a key against the limits.
func checkKVKey(ns, key string, l storage.KVLimits) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return err
	}
	if err := storage.ValidateKVKey(key, l.MaxKeyBytes); err != nil {
		return fmt.Errorf("%s/%q: %w", ns, key, err)
	}
	return nil
}

// ownWriteWait bounds how long a KV write through a follower waits for
// the follower to apply it (read-your-writes): with writes flowing that
// takes a round trip, when idle the leader's commit timeout (10-20 ms).
const ownWriteWait = time.Second

// proposeKV commits c through Raft and returns the FSM's result; on a
// follower the write is forwarded to the leader (see Store.apply) and
// returns once this node applied it too (read-your-writes on the node
// that took the write). On the leader, concurrent KV writes share Raft
// entries (kv_batch.go).
func (s *Store) proposeKV(ctx context.Context, c storage.KVCommand) (storage.KVResult, error) {
	// Named only on error: formatting it for every write costs CPU.
	what := func() string {
		if c.Key != "" {
			return fmt.Sprintf("%s %s/%q", c.Op, c.Namespace, c.Key)
		}
		return fmt.Sprintf("%s %s", c.Op, c.Namespace)
	}
	b, err := storage.EncodeKVCommand(c)
	if err != nil {
		return storage.KVResult{}, fmt.Errorf("%s: %w", what(), err)
	}
	resp, err := s.apply(ctx, b)
	if err != nil {
		return storage.KVResult{}, fmt.Errorf("%s: %w", what(), err)
	}
	res, ok := resp.(storage.ApplyResult)
	if !ok {
		return storage.KVResult{}, fmt.Errorf("%s: the state machine answered %T, not an ApplyResult", what(), resp)
	}
	// A forwarded write is acknowledged once the leader applied it, which
	// may be before this node did: wait, so a read on this node right
	// after the write sees it (a failed compare-and-set too: its current
	// version is then readable here). The leader answers an index at or
	// above the entry's; a put's version is its entry's index, which
	// covers a leader of an older build. On the leader both are applied.
	index := res.Index
	if index == 0 {
		index = res.KV.Version
	}
	// At most ownWriteWait: a lagging follower (installing a snapshot,
	// cut off from Raft) must not hold every KV write, and a guest's
	// whole time budget, for a write that is committed anyway.
	wctx, cancel := context.WithTimeout(ctx, ownWriteWait)
	s.awaitLocal(wctx, index, "op", c.Op, "namespace", c.Namespace, "key", c.Key)
	cancel()
	if res.Err != nil {
		// The storage errors name the key already.
		return res.KV, res.Err
	}
	return res.KV, nil
}
