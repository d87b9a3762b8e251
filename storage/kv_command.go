package storage

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// KV command operations.
const (
	// OpKVPut sets a key (optionally only at an expected version, with an
	// expiry).
	OpKVPut = "kv_put"
	// OpKVDelete deletes a key (optionally only at an expected version).
	// Deleting a missing key succeeds.
	OpKVDelete = "kv_delete"
	// OpKVExpire deletes every key expired at the command's Now. The
	// leader proposes it periodically.
	OpKVExpire = "kv_expire"
	// OpKVShare replaces a namespace's share list.
	OpKVShare = "kv_share"
)

// KVCommandTag is the first byte of a KV command's Raft entry in the
// JSON encoding nodes wrote before the binary one (kv_codec.go); the JSON
// command follows. Registry commands are bare JSON objects, so the FSM
// tells them apart without decoding twice (Consul tags its entries the
// same way).
const KVCommandTag = 'K'

// KVCommand is one change to the KV store: the payload of a Raft entry,
// binary since EncodeKVCommand stopped writing JSON (kv_codec.go; the JSON
// tags describe the old entries). Apply never reads the clock: the proposer
// stamps Now, and a put carries its expiry as an absolute time.
type KVCommand struct {
	// Op is OpKVPut, OpKVDelete, OpKVExpire or OpKVShare.
	Op string `json:"op"`
	// Namespace and Key name the key (Key not for kv_share, neither for
	// kv_expire).
	Namespace string `json:"ns,omitempty"`
	Key       string `json:"key,omitempty"`
	// Value is a put's value (base64 in JSON).
	Value []byte `json:"value,omitempty"`
	// CAS, when set, makes a put or delete conditional: it applies only if
	// the key's version is *CAS, 0 meaning "absent" (create only). A key
	// expired at Now counts as absent.
	CAS *uint64 `json:"cas,omitempty"`
	// ExpiresAt is when a put's key expires (the proposer's Now + TTL);
	// zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// MaxKeys is the namespace key quota a put must respect; 0 means no
	// quota. The proposer stamps its configured limit.
	MaxKeys int `json:"max_keys,omitempty"`
	// MaxBytes is the namespace size quota (keys and values) a put must
	// respect; 0 means no quota. The proposer stamps its configured limit.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Share is kv_share's new share list: function names.
	Share []string `json:"share,omitempty"`
	// Now is the proposer's clock: kv_expire deletes keys expired at Now,
	// and a conditional write treats keys expired at Now as absent.
	Now time.Time `json:"now"`
}

// KVResult is what a KV command returns (in ApplyResult.KV).
type KVResult struct {
	// Version is the key's version after a put: the Raft index of the
	// entry.
	Version uint64
	// Deleted counts the keys a delete or purge removed.
	Deleted int
}

// The range of times a KV command may carry: they are stored as unix
// nanoseconds.
var (
	kvMinTime = time.Unix(1, 0)
	kvMaxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// IsKVCommand reports whether a Raft entry holds KV commands: one, in
// either encoding, or a batch.
func IsKVCommand(data []byte) bool {
	if len(data) == 0 {
		return false
	}
	switch data[0] {
	case KVCommandTag, KVBinaryTag, KVBatchTag:
		return true
	}
	return false
}

// DecodeKVCommand decodes and validates one KV command, in the binary
// encoding or the old JSON one (whose unknown fields are ignored, as for
// registry commands). A batch is not one command: see EncodeKVBatch.
func DecodeKVCommand(data []byte) (KVCommand, error) {
	switch {
	case len(data) > 0 && data[0] == KVBinaryTag:
		return decodeKVBinary(data)
	case len(data) == 0 || data[0] != KVCommandTag:
		return KVCommand{}, fmt.Errorf("%w: not a single KV command (no %q or %#x tag)", ErrInvalid, KVCommandTag, KVBinaryTag)
	}
	var c KVCommand
	if err := json.Unmarshal(data[1:], &c); err != nil {
		return KVCommand{}, fmt.Errorf("%w: KV command is not valid JSON: %v", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return KVCommand{}, err
	}
	return c, nil
}

// Validate checks a command's fields for its Op against the ceilings (the
// configured, tighter limits are the proposer's to check).
func (c KVCommand) Validate() error {
	if err := checkKVTime("now", c.Now, true); err != nil {
		return err
	}
	switch c.Op {
	case OpKVPut, OpKVDelete:
		if err := ValidateNamespace(c.Namespace); err != nil {
			return err
		}
		if err := ValidateKVKey(c.Key, KVKeyBytesCeiling); err != nil {
			return err
		}
		if c.Op == OpKVDelete {
			if len(c.Value) != 0 || !c.ExpiresAt.IsZero() {
				return fmt.Errorf("%w: kv_delete carries no value and no expiry", ErrInvalid)
			}
			return nil
		}
		if c.MaxKeys < 0 {
			return fmt.Errorf("%w: kv_put max_keys %d is negative", ErrInvalid, c.MaxKeys)
		}
		if c.MaxBytes < 0 {
			return fmt.Errorf("%w: kv_put max_bytes %d is negative", ErrInvalid, c.MaxBytes)
		}
		if err := checkKVValue(len(c.Value), KVValueBytesCeiling); err != nil {
			return err
		}
		return checkKVTime("expires_at", c.ExpiresAt, false)
	case OpKVExpire:
		return nil
	case OpKVShare:
		if err := ValidateNamespace(c.Namespace); err != nil {
			return err
		}
		return ValidateKVShare(c.Namespace, c.Share)
	default:
		return fmt.Errorf("%w: unknown KV command %q (want %q, %q, %q or %q)", ErrInvalid, clip(c.Op), OpKVPut, OpKVDelete, OpKVExpire, OpKVShare)
	}
}

// ValidateKVShare checks namespace ns's share list: at most MaxKVShare
// function names, no duplicates, not ns itself (its owner always has
// access).
func ValidateKVShare(ns string, share []string) error {
	if len(share) > MaxKVShare {
		return fmt.Errorf("%w: the share list has %d names, more than the limit of %d", ErrInvalid, len(share), MaxKVShare)
	}
	seen := make(map[string]bool, len(share))
	for i, fn := range share {
		if err := ValidateName(fn); err != nil {
			return fmt.Errorf("share[%d]: %w", i, err)
		}
		if fn == ns {
			return fmt.Errorf("%w: share[%d] is %q, the namespace's own function, which always has access; leave it out", ErrInvalid, i, fn)
		}
		if seen[fn] {
			return fmt.Errorf("%w: share[%d]: %q is listed twice", ErrInvalid, i, fn)
		}
		seen[fn] = true
	}
	return nil
}

func checkKVTime(field string, t time.Time, required bool) error {
	if t.IsZero() {
		if required {
			return fmt.Errorf("%w: KV command has no %s time", ErrInvalid, field)
		}
		return nil
	}
	if t.Before(kvMinTime) || !t.Before(kvMaxTime) {
		return fmt.Errorf("%w: KV command %s %v is outside 1970 to 2261", ErrInvalid, field, t)
	}
	return nil
}

// applyKV decodes the KV command in data and computes the new KV tree and
// the result. Like apply, it is deterministic: the time comes from the
// command, iteration is in key order, and a failed command changes
// nothing (the caller keeps s.kv).
func (s *State) applyKV(index uint64, data []byte) (kvTree[*kvNamespace], ApplyResult) {
	c, err := DecodeKVCommand(data)
	if err != nil {
		return s.kv, ApplyResult{Err: err}
	}
	now := c.Now.UnixNano()
	ns, _ := s.kv.Get(c.Namespace)
	switch c.Op {
	case OpKVPut:
		if ns == nil {
			ns = &kvNamespace{}
		}
		old, exists := ns.keys.Get(c.Key)
		if err := checkCAS(c, old, exists, now); err != nil {
			return s.kv, ApplyResult{Err: err}
		}
		if !exists && c.MaxKeys > 0 && ns.keys.Len() >= c.MaxKeys {
			return s.kv, ApplyResult{Err: fmt.Errorf("%w: namespace %s holds %d keys, the most allowed; delete keys or raise the limit", ErrKVQuota, c.Namespace, ns.keys.Len())}
		}
		size := ns.bytes + kvSize(c.Key, c.Value)
		if exists {
			size -= kvSize(c.Key, old.value)
		}
		if c.MaxBytes > 0 && size > c.MaxBytes && size > ns.bytes {
			return s.kv, ApplyResult{Err: fmt.Errorf("%w: namespace %s holds %d bytes of keys and values; this put would make it %d, more than the limit of %d; delete keys or store less",
				ErrKVQuota, c.Namespace, ns.bytes, size, c.MaxBytes)}
		}
		it := kvItem{value: c.Value, version: index}
		if !c.ExpiresAt.IsZero() {
			it.expires = c.ExpiresAt.UnixNano()
		}
		next := &kvNamespace{keys: ns.keys.Set(c.Key, it), bytes: size, ttlKeys: ns.ttlKeys, share: ns.share}
		if exists && old.expires != 0 {
			next.ttlKeys--
		}
		if it.expires != 0 {
			next.ttlKeys++
		}
		return s.kv.Set(c.Namespace, next), ApplyResult{KV: KVResult{Version: index}}

	case OpKVDelete:
		var old kvItem
		exists := false
		if ns != nil {
			old, exists = ns.keys.Get(c.Key)
		}
		if err := checkCAS(c, old, exists, now); err != nil {
			return s.kv, ApplyResult{Err: err}
		}
		if !exists {
			return s.kv, ApplyResult{}
		}
		next := &kvNamespace{keys: ns.keys.Delete(c.Key), bytes: ns.bytes - kvSize(c.Key, old.value), ttlKeys: ns.ttlKeys, share: ns.share}
		if old.expires != 0 {
			next.ttlKeys--
		}
		return putNamespace(s.kv, c.Namespace, next), ApplyResult{KV: KVResult{Deleted: 1}}

	case OpKVShare:
		share := slices.Sorted(slices.Values(c.Share))
		if len(share) == 0 {
			share = nil
		}
		next := &kvNamespace{share: share}
		if ns != nil {
			next.keys, next.bytes, next.ttlKeys = ns.keys, ns.bytes, ns.ttlKeys
		}
		return putNamespace(s.kv, c.Namespace, next), ApplyResult{}

	case OpKVExpire:
		kv, deleted := s.kv, 0
		s.kv.Ascend("", func(name string, ns *kvNamespace) bool {
			if ns.ttlKeys == 0 {
				return true
			}
			next := &kvNamespace{keys: ns.keys, bytes: ns.bytes, ttlKeys: ns.ttlKeys, share: ns.share}
			ns.keys.Ascend("", func(key string, it kvItem) bool {
				if it.expired(now) {
					next.keys = next.keys.Delete(key)
					next.bytes -= kvSize(key, it.value)
					next.ttlKeys--
					deleted++
				}
				return true
			})
			if next.keys.Len() != ns.keys.Len() {
				kv = putNamespace(kv, name, next)
			}
			return true
		})
		return kv, ApplyResult{KV: KVResult{Deleted: deleted}}
	}
	// DecodeKVCommand validated Op.
	return s.kv, ApplyResult{Err: fmt.Errorf("%w: unknown KV command %q", ErrInvalid, clip(c.Op))}
}

// putNamespace returns t with namespace name set to ns, or without it when
// ns is empty.
func putNamespace(t kvTree[*kvNamespace], name string, ns *kvNamespace) kvTree[*kvNamespace] {
	if ns.empty() {
		return t.Delete(name)
	}
	return t.Set(name, ns)
}

// checkCAS returns the conflict of a conditional write, or nil.
func checkCAS(c KVCommand, old kvItem, exists bool, now int64) error {
	if c.CAS == nil {
		return nil
	}
	var cur uint64
	if exists && !old.expired(now) {
		cur = old.version
	}
	if cur != *c.CAS {
		return &KVConflictError{Namespace: c.Namespace, Key: c.Key, Expected: *c.CAS, Current: cur}
	}
	return nil
}
