package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// HostKV is the Store's KV as the runtime's host functions need it
// (runtime.KV): guests read this node's replica unless they ask for a
// linearizable read (which needs a reachable leader), and their writes commit
// through Raft, forwarded to the leader from a follower, exactly like
// the admin API's; a write returns once this node's replica has applied
// it too (Store.proposeKV), so a guest reads its own writes. Errors keep
// the store's message and also match the runtime's KV sentinels.
type HostKV struct {
	s *Store
}

var _ runtime.KV = HostKV{}

// NewHostKV returns s's KV for runtime.Config.KV.
func NewHostKV(s *Store) HostKV { return HostKV{s: s} }

// Limits implements runtime.KV with the store's current limits.
func (h HostKV) Limits() (int, int) {
	l := h.s.KVLimits()
	return l.MaxKeyBytes, l.MaxValueBytes
}

// CheckAccess implements runtime.KV through Store.KVCheckAccess, which
// reads the share lists of this node's replica.
func (h HostKV) CheckAccess(function, namespace string) error {
	return hostKVError(h.s.KVCheckAccess(function, namespace))
}

// Get implements runtime.KV. The value is shared with the replicated
// state; the runtime only reads it.
func (h HostKV) Get(ctx context.Context, namespace, key string, linearizable bool) ([]byte, uint64, error) {
	c := ConsistencyLocal
	if linearizable {
		c = ConsistencyLinearizable
	}
	e, err := h.s.KVGet(ctx, namespace, key, c)
	if err != nil {
		return nil, 0, hostKVError(err)
	}
	return e.Value, e.Version, nil
}

// Put implements runtime.KV.
func (h HostKV) Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration, cas int64) (uint64, error) {
	opts := KVWriteOptions{TTL: ttl}
	if cas != runtime.KVNoCAS {
		v := uint64(cas)
		opts.CAS = &v
	}
	v, err := h.s.KVPut(ctx, namespace, key, value, opts)
	if err != nil {
		var ce *storage.KVConflictError
		if errors.As(err, &ce) {
			v = ce.Current
		}
		return v, hostKVError(err)
	}
	return v, nil
}

// Delete implements runtime.KV. Like a put, it returns once this node's
// replica has applied it, so the guest's next local read does not find
// the key.
func (h HostKV) Delete(ctx context.Context, namespace, key string) error {
	return hostKVError(h.s.KVDelete(ctx, namespace, key, KVWriteOptions{}))
}

// List implements runtime.KV; the cursor is the last key of the previous
// page, read from this node's replica.
func (h HostKV) List(ctx context.Context, namespace, prefix, cursor string, limit int) ([]string, string, error) {
	page, err := h.s.KVList(ctx, namespace, storage.KVListOptions{Prefix: prefix, After: cursor, Limit: limit}, ConsistencyLocal)
	if err != nil {
		return nil, "", hostKVError(err)
	}
	keys := make([]string, len(page.Entries))
	for i, e := range page.Entries {
		keys[i] = e.Key
	}
	next := ""
	if page.More && len(keys) > 0 {
		next = keys[len(keys)-1]
	}
	return keys, next, nil
}

// hostError is a store error that also matches a runtime KV sentinel.
type hostError struct {
	err, kind error
}

func (e *hostError) Error() string   { return e.err.Error() }
func (e *hostError) Unwrap() []error { return []error{e.err, e.kind} }

// hostKVError maps a store error to the runtime sentinel of its kind;
// errors of no known kind pass through (the guest sees an internal
// error).
func hostKVError(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrKVNotFound):
		kind = runtime.ErrKVNotFound
	case errors.Is(err, storage.ErrKVConflict):
		kind = runtime.ErrKVConflict
	case errors.Is(err, storage.ErrKVForbidden):
		kind = runtime.ErrKVForbidden
	case errors.Is(err, storage.ErrKVTooLarge):
		kind = runtime.ErrKVTooLarge
	case errors.Is(err, storage.ErrKVQuota):
		kind = runtime.ErrKVQuota
	case errors.Is(err, storage.ErrInvalid):
		kind = runtime.ErrKVInvalid
	case unavailable(err), errors.Is(err, context.Canceled):
		kind = runtime.ErrKVUnavailable
	default:
		return err
	}
	return &hostError{err: err, kind: kind}
}
