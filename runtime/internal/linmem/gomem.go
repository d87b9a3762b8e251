package linmem

import (
	"fmt"
	"sync"
)

// goMemory is a Memory backed by a Go byte slice (KindPlain and KindCopy).
//
// wazero adopts the slice returned by each Reallocate as the memory's buffer
// (and refreshes the compiled code's base pointer), so moving to a larger
// backing array on grow is fine for non-shared memories. Between grows the
// slice wazero holds shares buf's backing array, which is how Reset's copy
// becomes visible to the guest.
type goMemory struct {
	mu        sync.Mutex
	buf       []byte // what wazero sees; bytes in [len, cap) are always zero
	initCap   uint64 // wazero's suggested capacity, used on the first allocation
	max       uint64 // min(module max, limit)
	snap      []byte // contents at Snapshot (KindCopy)
	snapped   bool
	resetting bool // KindCopy; false for KindPlain
	inited    bool // the initial Reallocate succeeded
	freed     bool
}

func newGoMemory(cap, max uint64, resetting bool) *goMemory {
	return &goMemory{initCap: cap, max: max, resetting: resetting}
}

// Reallocate implements experimental.LinearMemory.
func (m *goMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	if m.freed {
		m.mu.Unlock()
		return nil
	}
	if size > m.max {
		first := !m.inited
		if first {
			m.freed = true
		}
		m.mu.Unlock()
		if first {
			initFailed(size, m.max)
		}
		return nil
	}
	m.inited = true
	if size > uint64(cap(m.buf)) {
		// Grow geometrically (as append would) but never beyond max: the
		// memory is reused across requests, so it reaches its high-water
		// capacity once and then stays there.
		c := max(size, m.initCap, min(2*uint64(cap(m.buf)), m.max))
		nb := make([]byte, size, c)
		copy(nb, m.buf)
		m.buf = nb
	} else if size > uint64(len(m.buf)) {
		m.buf = m.buf[:size]
	}
	b := m.buf
	m.mu.Unlock()
	return b
}

// Free implements experimental.LinearMemory. It is idempotent.
func (m *goMemory) Free() {
	m.mu.Lock()
	m.freed = true
	m.buf, m.snap = nil, nil
	m.mu.Unlock()
}

// Len implements Memory.
func (m *goMemory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buf)
}

// Snapshot implements Memory: KindCopy copies the contents aside (reusing
// the previous snapshot's storage); KindPlain returns ErrUnsupported.
func (m *goMemory) Snapshot() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("snapshot"); err != nil {
		return err
	}
	m.snap = append(m.snap[:0], m.buf...)
	m.snapped = true
	return nil
}

// Reset implements Memory: KindCopy copies the snapshot back and zeroes the
// rest of the current length; KindPlain returns ErrUnsupported.
func (m *goMemory) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("reset"); err != nil {
		return err
	}
	if !m.snapped {
		return fmt.Errorf("linmem: reset: %w", ErrNoSnapshot)
	}
	n := copy(m.buf, m.snap)
	clear(m.buf[n:])
	return nil
}

func (m *goMemory) check(op string) error {
	switch {
	case m.freed:
		return fmt.Errorf("linmem: %s: %w", op, ErrFreed)
	case !m.resetting:
		return fmt.Errorf("linmem: %s of a %v memory: %w", op, KindPlain, ErrUnsupported)
	}
	return nil
}
