package storage

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Design notes for the KV store.
//
// Where it lives: in the registry FSM's immutable State, next to the
// functions, so one Raft log, one snapshot and one apply goroutine cover
// both. KV entries are tagged (kv_codec.go: old JSON, binary, or a batch
// of either) so Apply dispatches without decoding twice, and they neither
// advance State.Index nor notify subscribers: the reconciler waits on that
// index and rebuilds the route table on every notification, which KV
// traffic must not cause.
//
// Memory: each namespace is an immutable treap (kv_tree.go), and the
// namespaces are one too. An apply copies O(log n) nodes; a published
// State is never modified, so readers (the edge, guests via the runtime,
// the API) read without locks and a snapshot just holds the pointer.
// go-immutable-radix would give the same properties, but importing it
// would change go.mod (tidy would make it a direct dependency), so the
// ~150-line treap stands in for it.
//
// Determinism: Apply never reads the clock. The proposer stamps Now and
// turns a TTL into an absolute ExpiresAt; conditional writes judge expiry
// by the command's Now; kv_expire deletes what expired at its Now. The key
// quota travels in each put (MaxKeys), so a leader's configuration decides
// it the same way on every node. Errors are results: a rejected command
// changes nothing, identically everywhere.
//
// Versions are the Raft index of a key's last write: unique, growing, and
// free (no counter to snapshot). Reads filter expired keys by the reader's
// clock, so a key disappears on time even if the purge runs late; the
// purge (proposed by the leader every KVConfig.ExpireInterval, only when
// something has expired) scans namespaces that hold TTL keys (ttlKeys > 0).
// An expiry index would make that O(expired) instead of O(TTL keys).
//
// Sharing is state, not spec: a namespace's share list is a KV command
// (kv_share), independent of deploys, so it survives redeploys and
// rollbacks and can exist before the namespace has keys.

// KV sentinel errors. Errors from the KV store wrap one of these, or
// ErrInvalid for a malformed namespace, key or command.
var (
	// ErrKVNotFound means the key does not exist (or has expired).
	ErrKVNotFound = errors.New("key not found")
	// ErrKVConflict means a compare-and-set found another version; the
	// error is a *KVConflictError carrying the current one.
	ErrKVConflict = errors.New("version conflict")
	// ErrKVTooLarge means a value is larger than the limit.
	ErrKVTooLarge = errors.New("value too large")
	// ErrKVQuota means a namespace already holds as many keys, or as many
	// bytes, as allowed.
	ErrKVQuota = errors.New("namespace quota exceeded")
	// ErrKVForbidden means a function may not use another function's
	// namespace: it is not in that namespace's share list.
	ErrKVForbidden = errors.New("namespace not shared with this function")
)

// KVConflictError is the error of a compare-and-set whose expected version
// is not the key's current one. It matches ErrKVConflict.
type KVConflictError struct {
	Namespace, Key string
	// Expected is the version the write asked for (0: absent).
	Expected uint64
	// Current is the key's version when the write applied (0: absent).
	Current uint64
}

// Error says what happened and what to do.
func (e *KVConflictError) Error() string {
	want := fmt.Sprintf("version %d", e.Expected)
	if e.Expected == 0 {
		want = "no key"
	}
	have := fmt.Sprintf("version %d", e.Current)
	if e.Current == 0 {
		have = "no key"
	}
	return fmt.Sprintf("%v: %s/%q: expected %s, found %s; read the key again and retry with its version", ErrKVConflict, e.Namespace, clip(e.Key), want, have)
}

// Is matches ErrKVConflict.
func (e *KVConflictError) Is(target error) bool { return target == ErrKVConflict }

// Defaults and ceilings of KVLimits. A ceiling is the most a limit may be
// set to; Apply enforces the ceilings, so a malformed log entry cannot
// store more.
const (
	// DefaultKVMaxKeyBytes is the default longest key.
	DefaultKVMaxKeyBytes = 512
	// DefaultKVMaxValueBytes is the default largest value (1 MiB).
	DefaultKVMaxValueBytes = 1 << 20
	// DefaultKVMaxKeys is the default number of keys per namespace.
	DefaultKVMaxKeys = 100_000
	// DefaultKVMaxBytes is the default size of a namespace: its keys and
	// values, which every node holds in memory (64 MiB).
	DefaultKVMaxBytes = 64 << 20
	// KVKeyBytesCeiling is the most MaxKeyBytes may be.
	KVKeyBytesCeiling = 4096
	// KVValueBytesCeiling is the most MaxValueBytes may be: a value
	// travels in one Raft entry.
	KVValueBytesCeiling = 8 << 20
	// MaxKVShare is the longest share list of a namespace.
	MaxKVShare = 256
)

// KVLimits bound what the KV store accepts. Key and value sizes are
// checked by the node that proposes a write; the key quota travels in
// every put, so all nodes enforce the same one.
type KVLimits struct {
	// MaxKeyBytes is the longest key. Default DefaultKVMaxKeyBytes (512),
	// at most KVKeyBytesCeiling.
	MaxKeyBytes int
	// MaxValueBytes is the largest value. Default DefaultKVMaxValueBytes
	// (1 MiB), at most KVValueBytesCeiling.
	MaxValueBytes int
	// MaxKeys is the most keys one namespace holds. Default
	// DefaultKVMaxKeys (100000). Expired keys count until they are purged.
	MaxKeys int
	// MaxBytes is the most bytes of keys and values one namespace holds.
	// Default DefaultKVMaxBytes (64 MiB). Expired keys count until they
	// are purged. Like MaxKeys it travels in every put.
	MaxBytes int64
}

// DefaultKVLimits returns the default limits.
func DefaultKVLimits() KVLimits {
	return KVLimits{MaxKeyBytes: DefaultKVMaxKeyBytes, MaxValueBytes: DefaultKVMaxValueBytes, MaxKeys: DefaultKVMaxKeys, MaxBytes: DefaultKVMaxBytes}
}

// WithDefaults returns l with zero fields set to the defaults.
func (l KVLimits) WithDefaults() KVLimits {
	d := DefaultKVLimits()
	if l.MaxKeyBytes == 0 {
		l.MaxKeyBytes = d.MaxKeyBytes
	}
	if l.MaxValueBytes == 0 {
		l.MaxValueBytes = d.MaxValueBytes
	}
	if l.MaxKeys == 0 {
		l.MaxKeys = d.MaxKeys
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	return l
}

// Validate returns the first limit out of range.
func (l KVLimits) Validate() error {
	switch {
	case l.MaxKeyBytes < 1 || l.MaxKeyBytes > KVKeyBytesCeiling:
		return fmt.Errorf("%w: KV MaxKeyBytes %d must be 1 to %d", ErrInvalid, l.MaxKeyBytes, KVKeyBytesCeiling)
	case l.MaxValueBytes < 0 || l.MaxValueBytes > KVValueBytesCeiling:
		return fmt.Errorf("%w: KV MaxValueBytes %d must be 0 to %d", ErrInvalid, l.MaxValueBytes, KVValueBytesCeiling)
	case l.MaxKeys < 1:
		return fmt.Errorf("%w: KV MaxKeys %d must be at least 1", ErrInvalid, l.MaxKeys)
	case l.MaxBytes < 1:
		return fmt.Errorf("%w: KV MaxBytes %d must be at least 1", ErrInvalid, l.MaxBytes)
	}
	return nil
}

// ValidateNamespace checks a KV namespace name. Namespaces are named after
// functions, so the rules are ValidateName's.
func ValidateNamespace(ns string) error {
	if err := ValidateName(ns); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	return nil
}

// ValidateKVKey checks a key against maxBytes: 1 to maxBytes bytes of
// valid UTF-8 without NUL.
func ValidateKVKey(key string, maxBytes int) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: the key is empty", ErrInvalid)
	case len(key) > maxBytes:
		return fmt.Errorf("%w: the key is %d bytes, more than the limit of %d", ErrInvalid, len(key), maxBytes)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: the key %q contains NUL", ErrInvalid, clip(key))
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: the key %q is not valid UTF-8", ErrInvalid, clip(key))
	}
	return nil
}

// checkKVValue checks a value's size against maxBytes.
func checkKVValue(n, maxBytes int) error {
	if n > maxBytes {
		return fmt.Errorf("%w: the value is %d bytes, more than the limit of %d (keep large data in a module or outside gojinn)", ErrKVTooLarge, n, maxBytes)
	}
	return nil
}

// KVEntry is one key as stored. Value is shared with every reader of the
// state: treat it as read-only.
type KVEntry struct {
	Key   string
	Value []byte
	// Version is the Raft index of the key's last write.
	Version uint64
	// ExpiresAt is when the key expires; zero means never.
	ExpiresAt time.Time
}

// Expired reports whether the entry has expired at now.
func (e KVEntry) Expired(now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}

// kvItem is an entry as the tree holds it.
type kvItem struct {
	value   []byte
	version uint64
	expires int64 // unix nanoseconds; 0: never
}

func (it kvItem) expired(now int64) bool { return it.expires != 0 && now >= it.expires }

func (it kvItem) entry(key string) KVEntry {
	e := KVEntry{Key: key, Value: it.value, Version: it.version}
	if it.expires != 0 {
		e.ExpiresAt = time.Unix(0, it.expires).UTC()
	}
	return e
}

// kvNamespace is one namespace: its keys and who may use it. A namespace
// with no keys and no share list is dropped.
type kvNamespace struct {
	keys kvTree[kvItem]
	// bytes is the size of its keys and values (kvSize).
	bytes int64
	// ttlKeys counts keys with an expiry, so a purge skips namespaces
	// without any.
	ttlKeys int
	// share lists the functions besides the owner that may read and write
	// the namespace, sorted.
	share []string
}

func (ns *kvNamespace) empty() bool { return ns.keys.Len() == 0 && len(ns.share) == 0 }

// kvSize is what a key and its value count against a namespace's
// MaxBytes.
func kvSize(key string, value []byte) int64 { return int64(len(key)) + int64(len(value)) }

// KVNamespaceInfo describes a namespace.
type KVNamespaceInfo struct {
	Name string `json:"namespace"`
	// Keys counts stored keys, including expired keys not yet purged.
	Keys int `json:"keys"`
	// Bytes is the size of their keys and values.
	Bytes int64 `json:"bytes"`
	// Share lists the functions besides the owner that may use it,
	// sorted; empty, never nil, when there are none.
	Share []string `json:"share"`
}

// KVGet returns key of namespace ns as of now: ErrKVNotFound when it does
// not exist or has expired at now (the reader's clock).
func (s *State) KVGet(ns, key string, now time.Time) (KVEntry, error) {
	if n, ok := s.kv.Get(ns); ok {
		if it, ok := n.keys.Get(key); ok && !it.expired(now.UnixNano()) {
			return it.entry(key), nil
		}
	}
	return KVEntry{}, fmt.Errorf("%w: %s/%q", ErrKVNotFound, ns, clip(key))
}

// KVListOptions select a page of keys.
type KVListOptions struct {
	// Prefix restricts the page to keys starting with it.
	Prefix string
	// After starts the page after this key (the last key of the previous
	// page); empty starts at the first key.
	After string
	// Limit is the most keys returned; <= 0 means 100.
	Limit int
}

// KVPage is one page of a listing.
type KVPage struct {
	// Entries are in key order.
	Entries []KVEntry
	// More is set when keys follow the last entry; list again with After
	// set to the last entry's key.
	More bool
}

// KVList returns keys of ns matching opts, skipping keys expired at now.
func (s *State) KVList(ns string, opts KVListOptions, now time.Time) KVPage {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	n, ok := s.kv.Get(ns)
	if !ok {
		return KVPage{}
	}
	from := opts.Prefix
	if opts.After >= from {
		// The smallest key after opts.After.
		from = opts.After + "\x00"
	}
	var page KVPage
	t := now.UnixNano()
	n.keys.Ascend(from, func(key string, it kvItem) bool {
		if !strings.HasPrefix(key, opts.Prefix) {
			return false
		}
		if it.expired(t) {
			return true
		}
		if len(page.Entries) == limit {
			page.More = true
			return false
		}
		page.Entries = append(page.Entries, it.entry(key))
		return true
	})
	return page
}

// KVNamespace describes ns; a namespace never written and never shared
// has no keys and an empty share list.
func (s *State) KVNamespace(ns string) KVNamespaceInfo {
	info := KVNamespaceInfo{Name: ns, Share: []string{}}
	if n, ok := s.kv.Get(ns); ok {
		info.Keys, info.Bytes = n.keys.Len(), n.bytes
		// Not slices.Clone: it keeps nil, and the API shows a missing
		// share list as [], never null.
		info.Share = append(info.Share, n.share...)
	}
	return info
}

// KVAllowed reports whether function fn may read and write namespace ns:
// its own namespace (ns == fn), or one whose share list names fn.
func (s *State) KVAllowed(fn, ns string) bool {
	if fn == ns {
		return true
	}
	n, ok := s.kv.Get(ns)
	if !ok {
		return false
	}
	_, found := slices.BinarySearch(n.share, fn)
	return found
}

// KVCheckAccess returns nil when fn may use ns, else an error wrapping
// ErrKVForbidden that says how to share it.
func (s *State) KVCheckAccess(fn, ns string) error {
	if s.KVAllowed(fn, ns) {
		return nil
	}
	return fmt.Errorf("%w: function %q may not use namespace %q; add it to the namespace's share list (PUT /v1/kv/%s {\"share\":[...]})", ErrKVForbidden, fn, ns, ns)
}

// kvHasExpired reports whether any key of any namespace has expired at
// now, so the leader proposes a purge only when there is work.
func (s *State) kvHasExpired(now int64) bool {
	found := false
	s.kv.Ascend("", func(_ string, n *kvNamespace) bool {
		if n.ttlKeys == 0 {
			return true
		}
		n.keys.Ascend("", func(_ string, it kvItem) bool {
			found = it.expired(now)
			return !found
		})
		return !found
	})
	return found
}

// KVHasExpired reports whether a purge at now would delete anything.
func (s *State) KVHasExpired(now time.Time) bool { return s.kvHasExpired(now.UnixNano()) }
