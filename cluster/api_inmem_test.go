package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// memRegistry is an in-memory Registry for the API tests: the same
// semantics as the Raft store (versions numbered per function and never
// reused, rollback to the previously active version) without Raft.
type memRegistry struct {
	mu      sync.Mutex
	fns     map[string]*storage.Function
	history map[string][]int64 // active versions, oldest first
	next    map[string]int64   // last version number used, kept after Remove
	calls   int                // Deploy, Rollback and Remove calls
	fail    error              // returned by every write when set
	subs    map[chan struct{}]struct{}
}

func newMemRegistry() *memRegistry {
	return &memRegistry{fns: map[string]*storage.Function{}, history: map[string][]int64{}, next: map[string]int64{},
		subs: map[chan struct{}]struct{}{}}
}

// Subscribe is storage.Registry.Subscribe: a value after every write that
// changed something, never blocking the writer.
func (m *memRegistry) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

// notify tells the subscribers of a change; m.mu is held.
func (m *memRegistry) notify() {
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *memRegistry) Deploy(_ context.Context, name string, spec storage.Spec) (storage.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail != nil {
		return storage.Version{}, m.fail
	}
	m.next[name]++
	v := storage.Version{Version: m.next[name], Spec: spec, DeployedAt: time.Now().UTC()}
	v.Env = maps.Clone(spec.Env)
	f := m.fns[name]
	if f == nil {
		f = &storage.Function{Name: name}
		m.fns[name] = f
	}
	f.Versions = append(f.Versions, v)
	f.Active = v.Version
	m.history[name] = append(m.history[name], v.Version)
	m.notify()
	return v, nil
}

func (m *memRegistry) Rollback(_ context.Context, name string, to int64) (storage.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail != nil {
		return storage.Version{}, m.fail
	}
	f := m.fns[name]
	if f == nil {
		return storage.Version{}, fmt.Errorf("rollback %q: %w", name, storage.ErrFunctionNotFound)
	}
	if to == 0 {
		h := m.history[name]
		if len(h) < 2 {
			return storage.Version{}, fmt.Errorf("rollback %q: no previous version: %w", name, storage.ErrVersionNotFound)
		}
		to = h[len(h)-2]
	}
	v, ok := f.FindVersion(to)
	if !ok {
		return storage.Version{}, fmt.Errorf("rollback %q to version %d: %w", name, to, storage.ErrVersionNotFound)
	}
	f.Active = to
	m.history[name] = append(m.history[name], to)
	m.notify()
	return v, nil
}

func (m *memRegistry) Remove(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail != nil {
		return m.fail
	}
	if m.fns[name] == nil {
		return fmt.Errorf("remove %q: %w", name, storage.ErrFunctionNotFound)
	}
	delete(m.fns, name)
	delete(m.history, name)
	m.notify()
	return nil
}

func (m *memRegistry) Functions() []storage.Function {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.Function
	for _, f := range m.fns {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b storage.Function) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out
}

func (m *memRegistry) Function(name string) (storage.Function, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fns[name]
	if f == nil {
		return storage.Function{}, false
	}
	return *f, true
}

func (m *memRegistry) Status() Status {
	return Status{NodeID: "node-1", RaftState: "Leader", Leader: "127.0.0.1:7000", Term: 2, Voters: 1}
}

// setFail makes every later write return err.
func (m *memRegistry) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// writes returns how many writes were attempted.
func (m *memRegistry) writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// memBlobs is an in-memory BlobStore that verifies hashes like the disk one.
type memBlobs struct {
	mu   sync.Mutex
	data map[string][]byte
	puts int
}

func newMemBlobs() *memBlobs { return &memBlobs{data: map[string][]byte{}} }

func (b *memBlobs) Has(sha string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.data[sha]
	return ok
}

func (b *memBlobs) Put(sha string, r io.Reader, maxBytes int64) (int64, error) {
	b.mu.Lock()
	b.puts++
	b.mu.Unlock()
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, maxBytes+1))
	if err != nil {
		return n, fmt.Errorf("blob %s: %w", sha, err)
	}
	if n > maxBytes {
		return n, fmt.Errorf("blob %s: larger than %d bytes: %w", sha, maxBytes, storage.ErrTooLarge)
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != sha {
		return n, fmt.Errorf("blob %s: %w", sha, storage.ErrHashMismatch)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data[sha] = buf.Bytes()
	return n, nil
}

func (b *memBlobs) putCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.puts
}
