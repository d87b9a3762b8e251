package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// In a format 2 snapshot, the function records are followed by one
// kvNamespaceRecord per namespace (sorted by name), each followed by its
// keys' kvKeyRecords in key order. Format 1 snapshots (written before KV
// existed) end after the function records.
type kvNamespaceRecord struct {
	Namespace string   `json:"ns"`
	Keys      int      `json:"keys"`
	Share     []string `json:"share,omitempty"`
}

type kvKeyRecord struct {
	Key       string    `json:"key"`
	Value     []byte    `json:"value,omitempty"`
	Version   uint64    `json:"version"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// encodeKV writes every namespace and key, a record at a time.
func (s *State) encodeKV(enc *json.Encoder) error {
	var err error
	s.kv.Ascend("", func(name string, ns *kvNamespace) bool {
		if err = enc.Encode(kvNamespaceRecord{Namespace: name, Keys: ns.keys.Len(), Share: ns.share}); err != nil {
			err = fmt.Errorf("registry snapshot: write KV namespace %s: %w", name, err)
			return false
		}
		ns.keys.Ascend("", func(key string, it kvItem) bool {
			e := it.entry(key)
			if err = enc.Encode(kvKeyRecord{Key: key, Value: e.Value, Version: e.Version, ExpiresAt: e.ExpiresAt}); err != nil {
				err = fmt.Errorf("registry snapshot: write KV key %s/%q: %w", name, clip(key), err)
			}
			return err == nil
		})
		return err == nil
	})
	return err
}

// decodeKV reads count namespaces written by encodeKV into a tree,
// checking that Apply could have produced them.
func decodeKV(dec *json.Decoder, count int) (kvTree[*kvNamespace], error) {
	var t kvTree[*kvNamespace]
	prevNS := ""
	for i := 0; i < count; i++ {
		var rec kvNamespaceRecord
		if err := decodeRecord(dec, &rec); err != nil {
			return t, fmt.Errorf("registry snapshot: KV namespace %d of %d: %w", i+1, count, err)
		}
		if err := ValidateNamespace(rec.Namespace); err != nil {
			return t, fmt.Errorf("registry snapshot: KV namespace %d: %w", i+1, err)
		}
		if i > 0 && rec.Namespace <= prevNS {
			return t, fmt.Errorf("registry snapshot: KV namespace %q is out of order after %q", rec.Namespace, prevNS)
		}
		prevNS = rec.Namespace
		if err := ValidateKVShare(rec.Namespace, rec.Share); err != nil {
			return t, fmt.Errorf("registry snapshot: KV namespace %s: %w", rec.Namespace, err)
		}
		if rec.Keys < 0 || (rec.Keys == 0 && len(rec.Share) == 0) {
			return t, fmt.Errorf("registry snapshot: KV namespace %s: %d keys and no share list", rec.Namespace, rec.Keys)
		}
		ns := &kvNamespace{}
		if len(rec.Share) > 0 {
			ns.share = slices.Sorted(slices.Values(rec.Share))
		}
		prevKey := ""
		for j := 0; j < rec.Keys; j++ {
			var kr kvKeyRecord
			if err := decodeRecord(dec, &kr); err != nil {
				return t, fmt.Errorf("registry snapshot: KV namespace %s, key %d of %d: %w", rec.Namespace, j+1, rec.Keys, err)
			}
			if err := kr.check(j > 0, prevKey); err != nil {
				return t, fmt.Errorf("registry snapshot: KV namespace %s, key %d: %w", rec.Namespace, j+1, err)
			}
			prevKey = kr.Key
			it := kvItem{value: kr.Value, version: kr.Version}
			if !kr.ExpiresAt.IsZero() {
				it.expires = kr.ExpiresAt.UnixNano()
				ns.ttlKeys++
			}
			ns.keys = ns.keys.Set(kr.Key, it)
			ns.bytes += kvSize(kr.Key, kr.Value)
		}
		t = t.Set(rec.Namespace, ns)
	}
	return t, nil
}

// check rejects key records Apply could never have produced.
func (kr *kvKeyRecord) check(hasPrev bool, prev string) error {
	if err := ValidateKVKey(kr.Key, KVKeyBytesCeiling); err != nil {
		return err
	}
	if hasPrev && kr.Key <= prev {
		return fmt.Errorf("%w: key %q is out of order after %q", ErrInvalid, clip(kr.Key), clip(prev))
	}
	if err := checkKVValue(len(kr.Value), KVValueBytesCeiling); err != nil {
		return err
	}
	// The header's index counts registry commands only, so it does not
	// bound KV versions.
	if kr.Version < 1 {
		return fmt.Errorf("%w: key %q: version %d must be at least 1", ErrInvalid, clip(kr.Key), kr.Version)
	}
	return checkKVTime("expires_at", kr.ExpiresAt, false)
}

// decodeRecord decodes the next JSON line, reporting a missing one as
// io.ErrUnexpectedEOF.
func decodeRecord(dec *json.Decoder, v any) error {
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
