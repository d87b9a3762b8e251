package runtime

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemKV is an in-memory KV for tests and single-process embeddings: one
// process, no replication, no persistence. Versions come from one counter
// shared by all keys, as Raft indexes do in the cluster's KV; expired keys
// are hidden from reads and dropped on the next write to them. A function
// may use its own namespace and those shared with it (Share). It is safe
// for concurrent use.
type MemKV struct {
	// MaxKeyBytes and MaxValueBytes are the limits Limits reports; zero
	// means 512 and 1 MiB, the cluster's defaults.
	MaxKeyBytes, MaxValueBytes int

	mu    sync.Mutex
	last  uint64
	data  map[string]map[string]memEntry
	share map[string][]string
}

type memEntry struct {
	value   []byte
	version uint64
	expires time.Time
}

var _ KV = (*MemKV)(nil)

// NewMemKV returns an empty MemKV with the default limits. The zero
// MemKV is ready to use too.
func NewMemKV() *MemKV {
	return &MemKV{data: map[string]map[string]memEntry{}, share: map[string][]string{}}
}

// Share lets functions, besides its owner, use namespace.
func (m *MemKV) Share(namespace string, functions ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.share == nil {
		m.share = map[string][]string{}
	}
	m.share[namespace] = append(m.share[namespace], functions...)
}

// Limits implements KV.
func (m *MemKV) Limits() (int, int) {
	k, v := m.MaxKeyBytes, m.MaxValueBytes
	if k == 0 {
		k = 512
	}
	if v == 0 {
		v = 1 << 20
	}
	return k, v
}

// CheckAccess implements KV.
func (m *MemKV) CheckAccess(function, namespace string) error {
	if function == namespace {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Contains(m.share[namespace], function) {
		return nil
	}
	return fmt.Errorf("%w: function %q may not use namespace %q", ErrKVForbidden, function, namespace)
}

// lookup returns the live entry of key; m.mu is held.
func (m *MemKV) lookup(namespace, key string, now time.Time) (memEntry, bool) {
	e, ok := m.data[namespace][key]
	if !ok || (!e.expires.IsZero() && !now.Before(e.expires)) {
		return memEntry{}, false
	}
	return e, true
}

// Get implements KV; every read is linearizable.
func (m *MemKV) Get(ctx context.Context, namespace, key string, _ bool) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrKVUnavailable, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(namespace, key, time.Now())
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s/%q", ErrKVNotFound, namespace, key)
	}
	return e.value, e.version, nil
}

// Put implements KV.
func (m *MemKV) Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration, cas int64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrKVUnavailable, err)
	}
	maxKey, maxValue := m.Limits()
	switch {
	case key == "" || len(key) > maxKey || strings.IndexByte(key, 0) >= 0:
		return 0, fmt.Errorf("%w: key %q must be 1 to %d bytes without NUL", ErrKVInvalid, key, maxKey)
	case len(value) > maxValue:
		return 0, fmt.Errorf("%w: the value is %d bytes, more than the limit of %d", ErrKVTooLarge, len(value), maxValue)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.lookup(namespace, key, now)
	if cas != KVNoCAS && uint64(cas) != cur.version {
		if !ok {
			cur.version = 0
		}
		return cur.version, fmt.Errorf("%w: %s/%q: expected version %d, found %d", ErrKVConflict, namespace, key, cas, cur.version)
	}
	if m.data == nil {
		m.data = map[string]map[string]memEntry{}
	}
	ns := m.data[namespace]
	if ns == nil {
		ns = map[string]memEntry{}
		m.data[namespace] = ns
	}
	m.last++
	e := memEntry{value: slices.Clone(value), version: m.last}
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	ns[key] = e
	return e.version, nil
}

// Delete implements KV.
func (m *MemKV) Delete(ctx context.Context, namespace, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrKVUnavailable, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data[namespace], key)
	return nil
}

// List implements KV; the cursor is the last key of the previous page.
func (m *MemKV) List(ctx context.Context, namespace, prefix, cursor string, limit int) ([]string, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrKVUnavailable, err)
	}
	now := time.Now()
	m.mu.Lock()
	var all []string
	for k := range m.data[namespace] {
		if _, ok := m.lookup(namespace, k, now); ok && strings.HasPrefix(k, prefix) && k > cursor {
			all = append(all, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(all)
	if len(all) > limit {
		return all[:limit], all[limit-1], nil
	}
	return all, "", nil
}
