package runtime

import (
	"context"
	"errors"
	"time"
)

// KV sentinel errors. A KV implementation returns errors matching one of
// these (errors.Is), so the host functions can give the guest the right
// status code; anything else reaches the guest as an internal error.
var (
	// ErrKVNotFound means the key does not exist (or has expired).
	ErrKVNotFound = errors.New("key not found")
	// ErrKVConflict means a compare-and-set found another version.
	ErrKVConflict = errors.New("version conflict")
	// ErrKVForbidden means the function may not use the namespace.
	ErrKVForbidden = errors.New("namespace not shared with this function")
	// ErrKVInvalid means a malformed namespace, key, TTL or argument.
	ErrKVInvalid = errors.New("invalid KV argument")
	// ErrKVTooLarge means a value is larger than the store accepts.
	ErrKVTooLarge = errors.New("value too large")
	// ErrKVQuota means the namespace holds as many keys as allowed.
	ErrKVQuota = errors.New("namespace quota exceeded (keys or bytes)")
	// ErrKVUnavailable means the store cannot answer now (no KV on this
	// node, no reachable Raft leader for a write or a linearizable read,
	// or the invocation's deadline passed); the guest may retry.
	ErrKVUnavailable = errors.New("KV unavailable")
)

// KVNoCAS is the cas argument of KV.Put for an unconditional write.
const KVNoCAS int64 = -1

// KV is the key-value store guests reach through the gojinn_kv_v1 host
// functions (docs/guest-protocol.md, "KV"). The runtime declares it and
// the cluster satisfies it (cluster.HostKV); MemKV is an in-memory one.
// Every method may be called concurrently. The host resolves the empty
// namespace to the calling function's name and calls CheckAccess before
// every other method, so implementations see only permitted namespaces.
type KV interface {
	// Limits returns the longest key and the largest value a write may
	// have. The host refuses larger ones before copying them out of the
	// guest.
	Limits() (maxKeyBytes, maxValueBytes int)
	// CheckAccess returns nil when function may read and write namespace,
	// else an error matching ErrKVForbidden.
	CheckAccess(function, namespace string) error
	// Get returns the value and version of key. Local reads may trail the
	// latest write; linearizable ones see every acknowledged write. The
	// value may be shared with the store: the caller only reads it.
	Get(ctx context.Context, namespace, key string, linearizable bool) (value []byte, version uint64, err error)
	// Put writes key and returns its new version once committed. ttl > 0
	// makes the key expire; cas is KVNoCAS (unconditional), 0 (only if the
	// key is absent) or the version the key must have. A cas mismatch
	// returns the key's current version (0: absent) and an error matching
	// ErrKVConflict. Put does not keep value after it returns.
	Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration, cas int64) (version uint64, err error)
	// Delete deletes key once committed; a missing key is not an error.
	Delete(ctx context.Context, namespace, key string) error
	// List returns up to limit keys with prefix, in key order, after
	// cursor ("" for the first page), and the cursor of the next page
	// ("" when there is none).
	List(ctx context.Context, namespace, prefix, cursor string, limit int) (keys []string, next string, err error)
}

// Status codes the gojinn_kv_v1 functions return; docs/guest-protocol.md
// and sdk/go/kv.go carry the same numbers.
const (
	kvOK          int32 = 0
	kvNotFound    int32 = -1
	kvConflict    int32 = -2
	kvForbidden   int32 = -3
	kvInvalid     int32 = -4
	kvTooLarge    int32 = -5
	kvQuota       int32 = -6
	kvUnavailable int32 = -7
	kvInternal    int32 = -8
)

// kvStatus maps a KV error to its status code.
func kvStatus(err error) int32 {
	switch {
	case err == nil:
		return kvOK
	case errors.Is(err, ErrKVNotFound):
		return kvNotFound
	case errors.Is(err, ErrKVConflict):
		return kvConflict
	case errors.Is(err, ErrKVForbidden):
		return kvForbidden
	case errors.Is(err, ErrKVInvalid):
		return kvInvalid
	case errors.Is(err, ErrKVTooLarge):
		return kvTooLarge
	case errors.Is(err, ErrKVQuota):
		return kvQuota
	case errors.Is(err, ErrKVUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kvUnavailable
	}
	return kvInternal
}

// kvCall is the host side of one invocation of a module that imports
// gojinn_kv_v1: who calls, until when, and the result buffer the guest
// copies with result_read. A fresh one is made per invocation and reaches
// the host functions through the call's context, so nothing of one
// request (a value, an error message) is visible to the next, even in a
// pooled instance, and no state is global.
type kvCall struct {
	kv       KV
	function string
	deadline time.Time // the invocation's wall-clock limit
	guard    *guard    // the running call's guard, told how long KV calls wait

	result  []byte // what result_read copies: a value (read-only, maybe shared), or scratch
	scratch []byte // host-owned buffer for messages and listings
}

type kvCallKey struct{}

// withKVCall returns ctx carrying a new kvCall for one invocation of f.
func (f *Function) withKVCall(ctx context.Context) (context.Context, *kvCall) {
	c := &kvCall{kv: f.engine.cfg.KV, function: f.spec.Name, deadline: time.Now().Add(f.spec.Limits.Timeout)}
	return context.WithValue(ctx, kvCallKey{}, c), c
}

// kvCallFrom returns the invocation's kvCall, or nil outside an
// invocation.
func kvCallFrom(ctx context.Context) *kvCall {
	c, _ := ctx.Value(kvCallKey{}).(*kvCall)
	return c
}

// fail leaves err's message in the result buffer and returns its status.
func (c *kvCall) fail(err error) int32 {
	c.scratch = append(c.scratch[:0], err.Error()...)
	c.result = c.scratch
	return kvStatus(err)
}

// context bounds a KV call by the invocation's deadline: a warm pooled
// instance runs with its caller's context, which the guard does not end
// at the timeout (it stops the guest through its stop global instead).
// For the same reason the guard is told of the call, so that stopping the
// guest (Engine.Close) ends it too.
func (c *kvCall) context(ctx context.Context) (context.Context, context.CancelFunc) {
	kctx, cancel := context.WithDeadline(ctx, c.deadline)
	if c.guard != nil {
		return kctx, c.guard.hostCall(cancel)
	}
	return kctx, cancel
}
