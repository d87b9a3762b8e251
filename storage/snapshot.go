package storage

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/hashicorp/raft"
)

// snapshotFormat is the version of the snapshot encoding. Restore refuses
// formats it does not know rather than guess. Format 1 had no KV; format 2
// appends the KV namespaces (kv_snapshot.go). Both restore.
const snapshotFormat = 2

// The snapshot is JSON lines: one snapshotHeader, then one snapshotRecord
// per name ever used, sorted by name, then (format 2) the KV namespaces.
// Writing and reading a record at a time keeps memory flat however many
// functions and keys there are.
type snapshotHeader struct {
	Format int    `json:"format"`
	Index  uint64 `json:"index"`
	Names  int    `json:"names"`
	// KVNamespaces counts the KV namespace records (format 2).
	KVNamespaces int `json:"kv_namespaces,omitempty"`
	// Applied is State.Applied; absent from older snapshots, which then
	// restore it as Index.
	Applied uint64 `json:"applied,omitempty"`
}

type snapshotRecord struct {
	Name        string    `json:"name"`
	LastVersion int64     `json:"last_version"`
	Previous    int64     `json:"previous,omitempty"`
	Function    *Function `json:"function,omitempty"`
}

// Snapshot implements raft.FSM. The current State is immutable, so the
// snapshot just holds on to it; Persist encodes it on Raft's snapshot
// goroutine while Apply carries on.
func (r *Registry) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: r.state.Load()}, nil
}

type fsmSnapshot struct{ state *State }

// Persist implements raft.FSMSnapshot.
func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := f.state.Encode(sink); err != nil {
		_ = sink.Cancel() // the encode error is the one to report
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("registry snapshot: close sink: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (f *fsmSnapshot) Release() {}

// Encode writes the state in the snapshot format.
func (s *State) Encode(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	names := slices.Sorted(maps.Keys(s.entries))
	h := snapshotHeader{Format: snapshotFormat, Index: s.index, Applied: s.applied, Names: len(names), KVNamespaces: s.kv.Len()}
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("registry snapshot: write header: %w", err)
	}
	for _, name := range names {
		e := s.entries[name]
		rec := snapshotRecord{Name: name, LastVersion: e.lastVersion, Previous: e.previous, Function: e.fn}
		if err := enc.Encode(rec); err != nil {
			return fmt.Errorf("registry snapshot: write %q: %w", name, err)
		}
	}
	if err := s.encodeKV(enc); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("registry snapshot: flush: %w", err)
	}
	return nil
}

// Restore implements raft.FSM: it replaces the whole state with a snapshot
// written by Persist, then notifies subscribers.
func (r *Registry) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := DecodeState(rc)
	if err != nil {
		return err
	}
	r.writeMu.Lock()
	r.state.Store(st)
	r.notify()
	r.writeMu.Unlock()
	return nil
}

// DecodeState decodes a state written by (*State).Encode, checking that it is
// consistent.
func DecodeState(rd io.Reader) (*State, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(rd, 64<<10))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("registry snapshot: read header: %w", err)
	}
	if h.Format != 1 && h.Format != snapshotFormat {
		return nil, fmt.Errorf("registry snapshot: format %d is not 1 or %d: written by another gojinn version (upgrade this node)", h.Format, snapshotFormat)
	}
	if h.Names < 0 || h.KVNamespaces < 0 || (h.Format == 1 && h.KVNamespaces != 0) {
		return nil, fmt.Errorf("registry snapshot: format %d header counts %d names and %d KV namespaces", h.Format, h.Names, h.KVNamespaces)
	}
	entries := make(map[string]*entry, min(h.Names, 1<<16))
	for i := 0; i < h.Names; i++ {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("registry snapshot: record %d of %d: %w", i+1, h.Names, err)
		}
		if err := rec.check(); err != nil {
			return nil, fmt.Errorf("registry snapshot: record %d: %w", i+1, err)
		}
		if _, dup := entries[rec.Name]; dup {
			return nil, fmt.Errorf("registry snapshot: %q appears twice", rec.Name)
		}
		entries[rec.Name] = &entry{fn: rec.Function, lastVersion: rec.LastVersion, previous: rec.Previous}
	}
	kv, err := decodeKV(dec, h.KVNamespaces)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("registry snapshot: data after the %d names and %d KV namespaces the header counts", h.Names, h.KVNamespaces)
	}
	st := emptyState.with(entries, h.Index)
	st.kv = kv
	st.applied = max(h.Applied, h.Index)
	return st, nil
}

// MaxIndex returns the highest Raft index s records: Index, Applied and
// every KV version. A state restored from a backup into another log must
// be placed above it (RestoredAt): its versions came from the source
// cluster's log, and the target's new writes must not repeat them.
func (s *State) MaxIndex() uint64 {
	top := max(s.index, s.applied)
	s.kv.Ascend("", func(_ string, ns *kvNamespace) bool {
		ns.keys.Ascend("", func(_ string, it kvItem) bool {
			top = max(top, it.version)
			return true
		})
		return true
	})
	return top
}

// RestoredAt returns s as restored at Raft index index, as if the restore
// were a registry command applied there: Index and Applied become index,
// so readers that wait for an index of the target log (read index,
// forwarded writes, the reconciler) see the restore as one step of it.
// index must be above MaxIndex.
func (s *State) RestoredAt(index uint64) (*State, error) {
	if top := s.MaxIndex(); index <= top {
		return nil, fmt.Errorf("%w: restore index %d is not above the state's highest index %d", ErrInvalid, index, top)
	}
	next := *s
	next.index, next.applied = index, index
	return &next, nil
}

// check rejects records Apply could never have produced.
func (rec *snapshotRecord) check() error {
	if err := ValidateName(rec.Name); err != nil {
		return err
	}
	if rec.LastVersion < 0 || rec.Previous < 0 || rec.Previous > rec.LastVersion {
		return fmt.Errorf("%w: %q: last version %d, previous %d", ErrInvalid, rec.Name, rec.LastVersion, rec.Previous)
	}
	f := rec.Function
	if f == nil {
		return nil
	}
	if f.Name != rec.Name {
		return fmt.Errorf("%w: record %q holds function %q", ErrInvalid, rec.Name, f.Name)
	}
	if _, ok := f.ActiveVersion(); !ok {
		return fmt.Errorf("%w: %q: active version %d is not among its versions", ErrInvalid, rec.Name, f.Active)
	}
	for _, v := range f.Versions {
		if v.Version < 1 || v.Version > rec.LastVersion {
			return fmt.Errorf("%w: %q: version %d outside 1..%d", ErrInvalid, rec.Name, v.Version, rec.LastVersion)
		}
	}
	return nil
}
