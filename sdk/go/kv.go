package gojinn

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// KV errors. Every error of the KV functions is a *KVError that matches
// one of these with errors.Is.
var (
	// ErrKVNotFound means the key does not exist (or has expired).
	ErrKVNotFound = errors.New("gojinn: key not found")
	// ErrKVConflict means a compare-and-set found another version;
	// KVError.Version holds the current one (0: the key is absent).
	ErrKVConflict = errors.New("gojinn: version conflict")
	// ErrKVForbidden means the namespace is neither the function's own nor
	// shared with it.
	ErrKVForbidden = errors.New("gojinn: namespace not shared with this function")
	// ErrKVInvalid means a malformed namespace, key, TTL or argument.
	ErrKVInvalid = errors.New("gojinn: invalid KV argument")
	// ErrKVTooLarge means the value is larger than the node accepts.
	ErrKVTooLarge = errors.New("gojinn: value too large")
	// ErrKVQuota means the namespace holds as many keys as allowed.
	ErrKVQuota = errors.New("gojinn: namespace quota exceeded (keys or bytes)")
	// ErrKVUnavailable means the node cannot answer now: it has no KV, no
	// leader is reachable for a write or a linearizable read, or the
	// invocation ran out of time. Retrying later may succeed; for a write
	// whose outcome is unknown (the message says so), read the key before
	// retrying it.
	ErrKVUnavailable = errors.New("gojinn: KV unavailable")
	// ErrKVInternal means the node failed in a way the ABI has no code for.
	ErrKVInternal = errors.New("gojinn: KV internal error")
)

// Status codes of the gojinn_kv_v1 host functions (docs/guest-protocol.md).
const (
	kvNotFound    = -1
	kvConflict    = -2
	kvForbidden   = -3
	kvInvalid     = -4
	kvTooLarge    = -5
	kvQuota       = -6
	kvUnavailable = -7
)

// KVError is a failed KV call.
type KVError struct {
	// Op is the call: "get", "put", "delete" or "list".
	Op string
	// Namespace ("" for the function's own) and Key name the target.
	Namespace, Key string
	// Kind is one of the ErrKV* sentinels.
	Kind error
	// Message is the node's explanation.
	Message string
	// Version is, for ErrKVConflict, the key's current version (0: absent).
	Version uint64
}

// Error says what failed and why.
func (e *KVError) Error() string {
	s := "gojinn: kv " + e.Op
	if e.Key != "" {
		s += " " + strconv.Quote(e.Key)
	}
	if e.Namespace != "" {
		s += " in " + e.Namespace
	}
	return s + ": " + e.Message
}

// Unwrap returns the kind, so errors.Is matches the sentinels.
func (e *KVError) Unwrap() error { return e.Kind }

// kindOf maps a negative status to its sentinel.
func kindOf(status int32) error {
	switch status {
	case kvNotFound:
		return ErrKVNotFound
	case kvConflict:
		return ErrKVConflict
	case kvForbidden:
		return ErrKVForbidden
	case kvInvalid:
		return ErrKVInvalid
	case kvTooLarge:
		return ErrKVTooLarge
	case kvQuota:
		return ErrKVQuota
	case kvUnavailable:
		return ErrKVUnavailable
	}
	return ErrKVInternal
}

// kvFail builds the error of a call that returned status < 0, reading the
// node's message from the result buffer.
func kvFail(op, ns, key string, status int32, version uint64) error {
	e := &KVError{Op: op, Namespace: ns, Key: key, Kind: kindOf(status)}
	if status == kvConflict {
		e.Version = version
	}
	if n := hostResultLen(); n > 0 {
		msg := make([]byte, n)
		e.Message = hostMessage(op, string(msg[:hostResultRead(msg)]))
	} else {
		e.Message = e.Kind.Error()
	}
	return e
}

// ttlMillis is a TTL as the host takes it: whole milliseconds, where 0
// means none, so a positive TTL under a millisecond becomes 1 ms.
func ttlMillis(d time.Duration) int64 {
	if ms := d.Milliseconds(); ms > 0 || d <= 0 {
		return ms
	}
	return 1
}

// hostMessage is the host's message for a failed op without the "kv op"
// it may start with (up to its first ": "): Error names the op already.
func hostMessage(op, msg string) string {
	if strings.HasPrefix(msg, "kv "+op) {
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			return rest
		}
	}
	return msg
}

// KVStore is one KV namespace as seen by this function. The zero value,
// and KV(), is the function's own namespace.
type KVStore struct {
	ns string
}

// KV returns the function's own namespace (named like the function).
func KV() KVStore { return KVStore{} }

// KVNamespace returns namespace name: the function's own, or one its
// owner shared with this function (PUT /v1/kv/{namespace} {"share":[...]}).
func KVNamespace(name string) KVStore { return KVStore{ns: name} }

// Get returns key's value and version, read from this node's replica: it
// may trail a write acknowledged elsewhere by the replication lag.
// A missing key is ErrKVNotFound.
func (s KVStore) Get(key string) ([]byte, uint64, error) { return s.get(key, false) }

// GetLinearizable is Get that sees every write acknowledged before it
// started; it is slower and fails with ErrKVUnavailable on a node that is
// not the cluster's leader.
func (s KVStore) GetLinearizable(key string) ([]byte, uint64, error) { return s.get(key, true) }

func (s KVStore) get(key string, linearizable bool) ([]byte, uint64, error) {
	var flags uint32
	if linearizable {
		flags = 1
	}
	var version uint64
	n := hostGet(s.ns, key, flags, &version)
	if n < 0 {
		return nil, 0, kvFail("get", s.ns, key, n, 0)
	}
	value := make([]byte, n)
	hostResultRead(value)
	return value, version, nil
}

// KVPutOptions qualify KVStore.PutWith.
type KVPutOptions struct {
	// TTL > 0 makes the key expire that long after the write (rounded
	// down to milliseconds, and at least 1 ms); zero means never.
	TTL time.Duration
	// CAS, when set, makes the write apply only if the key's version is
	// *CAS, 0 meaning the key must be absent. A mismatch is ErrKVConflict.
	CAS *uint64
}

// Put sets key to value and returns the new version once the write is
// committed.
func (s KVStore) Put(key string, value []byte) (uint64, error) {
	return s.PutWith(key, value, KVPutOptions{})
}

// CompareAndSwap sets key to value only if its version is version (0: only
// if absent) and returns the new version; a mismatch is a *KVError
// matching ErrKVConflict whose Version is the current one.
func (s KVStore) CompareAndSwap(key string, value []byte, version uint64) (uint64, error) {
	return s.PutWith(key, value, KVPutOptions{CAS: &version})
}

// PutWith is Put with a TTL and an optional compare-and-set.
func (s KVStore) PutWith(key string, value []byte, o KVPutOptions) (uint64, error) {
	cas := int64(-1)
	if o.CAS != nil {
		if *o.CAS > 1<<63-1 {
			return 0, &KVError{Op: "put", Namespace: s.ns, Key: key, Kind: ErrKVInvalid, Message: "cas version out of range"}
		}
		cas = int64(*o.CAS)
	}
	if o.TTL < 0 {
		return 0, &KVError{Op: "put", Namespace: s.ns, Key: key, Kind: ErrKVInvalid, Message: "negative TTL"}
	}
	var version uint64
	if st := hostPut(s.ns, key, value, ttlMillis(o.TTL), cas, &version); st < 0 {
		return 0, kvFail("put", s.ns, key, st, version)
	}
	return version, nil
}

// Delete deletes key; a missing key is not an error.
func (s KVStore) Delete(key string) error {
	if st := hostDelete(s.ns, key); st < 0 {
		return kvFail("delete", s.ns, key, st, 0)
	}
	return nil
}

// ListPage returns up to limit keys starting with prefix, in key order,
// after cursor ("" for the first page), and the cursor of the next page
// ("" after the last). limit <= 0 means 100; the node returns at most
// 1000.
func (s KVStore) ListPage(prefix, cursor string, limit int) (keys []string, next string, err error) {
	if limit > 1<<31-1 {
		limit = 1<<31 - 1
	}
	n := hostList(s.ns, prefix, cursor, int32(limit))
	if n < 0 {
		return nil, "", kvFail("list", s.ns, prefix, n, 0)
	}
	buf := make([]byte, n)
	hostResultRead(buf)
	next, keys = parseList(buf)
	return keys, next, nil
}

// List returns every key starting with prefix, in key order, reading as
// many pages as it takes.
func (s KVStore) List(prefix string) ([]string, error) {
	var all []string
	cursor := ""
	for {
		keys, next, err := s.ListPage(prefix, cursor, 1000)
		if err != nil {
			return all, err
		}
		all = append(all, keys...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// parseList splits a listing "next\0k1\0k2\0" into the cursor and the
// keys. The strings share buf, which the caller never modifies.
func parseList(buf []byte) (next string, keys []string) {
	if len(buf) == 0 {
		return "", nil
	}
	s := unsafe.String(unsafe.SliceData(buf), len(buf))
	count := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			count++
		}
	}
	if count > 1 {
		keys = make([]string, 0, count-1)
	}
	first := true
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != 0 {
			i++
		}
		if first {
			next, first = s[:i], false
		} else {
			keys = append(keys, s[:i])
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return next, keys
}

// KVGet is KV().Get: key's value and version in the function's own
// namespace.
func KVGet(key string) ([]byte, uint64, error) { return KV().Get(key) }

// KVPut is KV().Put: set key in the function's own namespace.
func KVPut(key string, value []byte) (uint64, error) { return KV().Put(key, value) }

// KVDelete is KV().Delete: delete key from the function's own namespace.
func KVDelete(key string) error { return KV().Delete(key) }

// KVList is KV().List: every key with prefix in the function's own
// namespace.
func KVList(prefix string) ([]string, error) { return KV().List(prefix) }
