package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// KV entries come in three encodings, told apart by their first byte:
//
//   - KVCommandTag ('K') + JSON: one command, as nodes before the binary
//     encoding wrote it. Never proposed any more, but logs and forwarded
//     writes from older nodes still hold it, so it applies as it always
//     did.
//   - KVBinaryTag + the binary encoding below: one command. What
//     EncodeKVCommand writes.
//   - KVBatchTag + a count + length-prefixed single commands (either
//     encoding): a batch the leader's apply batcher coalesced into one Raft
//     entry. Its commands apply in order at the entry's index; each has its
//     own result (ApplyResult.Batch).
//
// Registry commands are bare JSON objects ('{'), so none of these bytes
// can start one.
//
// Binary single command, after the tag (varints are encoding/binary's):
//
//	op byte       1 kv_put, 2 kv_delete, 3 kv_expire, 4 kv_share
//	flags byte    1: CAS follows, 2: ExpiresAt follows; other bits invalid
//	now           varint, unix nanoseconds
//	namespace     uvarint length, bytes
//	key           uvarint length, bytes
//	value         uvarint length, bytes
//	[cas]         uvarint
//	[expires_at]  varint, unix nanoseconds
//	max_keys      uvarint
//	share         uvarint count, then each name as uvarint length, bytes
//
// Every field is written for every op (empty ones cost a byte), so the
// decoder has one shape to check; Validate then applies the op's rules.
// A 100-byte put with a 10-byte key takes ~130 bytes, where JSON (base64
// value, RFC 3339 time) took ~250, and decodes without reflection.
const (
	// KVBinaryTag starts a binary KV command.
	KVBinaryTag = 0x01
	// KVBatchTag starts a batch of KV commands in one Raft entry.
	KVBatchTag = 0x02
)

// Binary op codes; never reuse a number.
const (
	kvOpPut    = 1
	kvOpDelete = 2
	kvOpExpire = 3
	kvOpShare  = 4

	kvFlagCAS      = 1
	kvFlagExpires  = 2
	kvFlagMaxBytes = 4 // max_bytes follows max_keys (entries before it have no quota)
)

var kvOpCodes = map[string]byte{OpKVPut: kvOpPut, OpKVDelete: kvOpDelete, OpKVExpire: kvOpExpire, OpKVShare: kvOpShare}

var kvOpNames = [...]string{kvOpPut: OpKVPut, kvOpDelete: OpKVDelete, kvOpExpire: OpKVExpire, kvOpShare: OpKVShare}

// EncodeKVCommand validates c and encodes it (binary) for a Raft entry.
func EncodeKVCommand(c KVCommand) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return appendKVBinary(make([]byte, 0, kvBinarySize(c)), c), nil
}

// EncodeKVCommandJSON validates c and encodes it as nodes before the
// binary encoding did (KVCommandTag + JSON). Only tests and tools that
// need an old-format entry use it.
func EncodeKVCommandJSON(c KVCommand) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return append([]byte{KVCommandTag}, b...), nil
}

// kvBinarySize bounds the encoded size of c, so encoding allocates once.
func kvBinarySize(c KVCommand) int {
	n := 3 + 4*binary.MaxVarintLen64 + len(c.Namespace) + len(c.Key) + len(c.Value) + 3*binary.MaxVarintLen64
	for _, s := range c.Share {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

// appendKVBinary appends c's binary encoding (with its tag) to b; c must
// be valid.
func appendKVBinary(b []byte, c KVCommand) []byte {
	var flags byte
	if c.CAS != nil {
		flags |= kvFlagCAS
	}
	if !c.ExpiresAt.IsZero() {
		flags |= kvFlagExpires
	}
	if c.MaxBytes != 0 {
		flags |= kvFlagMaxBytes
	}
	b = append(b, KVBinaryTag, kvOpCodes[c.Op], flags)
	b = binary.AppendVarint(b, c.Now.UnixNano())
	b = appendKVBytes(b, c.Namespace)
	b = appendKVBytes(b, c.Key)
	b = appendKVBytes(b, c.Value)
	if c.CAS != nil {
		b = binary.AppendUvarint(b, *c.CAS)
	}
	if !c.ExpiresAt.IsZero() {
		b = binary.AppendVarint(b, c.ExpiresAt.UnixNano())
	}
	b = binary.AppendUvarint(b, uint64(c.MaxKeys))
	if c.MaxBytes != 0 {
		b = binary.AppendUvarint(b, uint64(c.MaxBytes))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Share)))
	for _, s := range c.Share {
		b = appendKVBytes(b, s)
	}
	return b
}

func appendKVBytes[T string | []byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// kvReader reads the binary encoding; the first error sticks.
type kvReader struct {
	b   []byte
	err error
}

func (r *kvReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: binary KV command: %s is truncated or malformed", ErrInvalid, what)
	}
}

func (r *kvReader) byte(what string) byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail(what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *kvReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *kvReader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next length-prefixed field, aliasing the input.
func (r *kvReader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// decodeKVBinary decodes a binary command (data starts with KVBinaryTag)
// and validates it. The value is copied: a state must not keep a whole
// log entry (or batch) alive for one key.
func decodeKVBinary(data []byte) (KVCommand, error) {
	r := kvReader{b: data[1:]}
	op := r.byte("op")
	flags := r.byte("flags")
	now := r.varint("now")
	ns := r.bytes("namespace")
	key := r.bytes("key")
	value := r.bytes("value")
	var c KVCommand
	if flags&kvFlagCAS != 0 {
		v := r.uvarint("cas")
		c.CAS = &v
	}
	var expires int64
	if flags&kvFlagExpires != 0 {
		expires = r.varint("expires_at")
	}
	maxKeys := r.uvarint("max_keys")
	var maxBytes uint64
	if flags&kvFlagMaxBytes != 0 {
		maxBytes = r.uvarint("max_bytes")
	}
	nShare := r.uvarint("share count")
	if r.err == nil && nShare > uint64(len(r.b)) {
		r.fail("share count") // each name takes at least a byte
	}
	if r.err == nil && nShare > 0 {
		c.Share = make([]string, nShare)
		for i := range c.Share {
			c.Share[i] = string(r.bytes("share name"))
		}
	}
	switch {
	case r.err != nil:
		return KVCommand{}, r.err
	case len(r.b) != 0:
		return KVCommand{}, fmt.Errorf("%w: binary KV command: %d bytes after the last field", ErrInvalid, len(r.b))
	case op == 0 || int(op) >= len(kvOpNames):
		return KVCommand{}, fmt.Errorf("%w: binary KV command: unknown op %d", ErrInvalid, op)
	case flags&^(kvFlagCAS|kvFlagExpires|kvFlagMaxBytes) != 0:
		return KVCommand{}, fmt.Errorf("%w: binary KV command: unknown flags %#x", ErrInvalid, flags)
	case maxKeys > math.MaxInt32:
		return KVCommand{}, fmt.Errorf("%w: binary KV command: max_keys %d is out of range", ErrInvalid, maxKeys)
	case maxBytes > math.MaxInt64 || flags&kvFlagMaxBytes != 0 && maxBytes == 0:
		return KVCommand{}, fmt.Errorf("%w: binary KV command: max_bytes %d is out of range", ErrInvalid, maxBytes)
	}
	c.Op = kvOpNames[op]
	c.Namespace, c.Key = string(ns), string(key)
	if len(value) > 0 {
		c.Value = append([]byte(nil), value...)
	}
	c.Now = time.Unix(0, now).UTC()
	if flags&kvFlagExpires != 0 {
		// Zero would read as "never" and change the command's meaning;
		// Validate rejects it (before 1970-01-01T00:00:01).
		c.ExpiresAt = time.Unix(0, expires).UTC()
	}
	c.MaxKeys, c.MaxBytes = int(maxKeys), int64(maxBytes)
	if err := c.Validate(); err != nil {
		return KVCommand{}, err
	}
	return c, nil
}

// EncodeKVBatch wraps encoded single KV commands (from EncodeKVCommand)
// into one Raft entry. Apply runs them in order and answers an
// ApplyResult whose Batch holds one result per command.
func EncodeKVBatch(cmds [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	b = append(b, KVBatchTag)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendKVBytes(b, c)
	}
	return b
}

// decodeKVBatch splits a batch entry into its commands (aliasing data).
// Each command is checked when it applies, so one malformed command fails
// alone; a malformed frame fails the whole entry.
func decodeKVBatch(data []byte) ([][]byte, error) {
	r := kvReader{b: data[1:]}
	n := r.uvarint("batch count")
	if r.err == nil && (n == 0 || n > uint64(len(r.b))) {
		return nil, fmt.Errorf("%w: KV batch of %d commands in %d bytes", ErrInvalid, n, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = r.bytes("batch command")
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: KV batch: %d bytes after the last command", ErrInvalid, len(r.b))
	}
	return cmds, nil
}

// IsKVBatch reports whether a Raft entry holds a batch of KV commands.
func IsKVBatch(data []byte) bool { return len(data) > 0 && data[0] == KVBatchTag }

// KVCommandKey returns the namespace and key an encoded single KV command
// writes, without decoding the rest; ok is false for commands without a
// key (kv_expire, kv_share) and for anything else. The apply batcher uses
// it to keep two writes of one key out of one batch.
func KVCommandKey(data []byte) (ns, key string, ok bool) {
	if len(data) == 0 || data[0] != KVBinaryTag {
		return "", "", false
	}
	r := kvReader{b: data[1:]}
	op := r.byte("op")
	r.byte("flags")
	r.varint("now")
	nsb := r.bytes("namespace")
	keyb := r.bytes("key")
	if r.err != nil || (op != kvOpPut && op != kvOpDelete) {
		return "", "", false
	}
	return string(nsb), string(keyb), true
}
