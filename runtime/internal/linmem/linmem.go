package linmem

import (
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/experimental"
)

// Sentinel errors. Errors returned by this package wrap one of these (or an
// OS error) with %w, so test them with errors.Is.
var (
	// ErrUnsupported means the requested Kind, or the requested operation
	// on a Memory of some Kind, is not available (KindCoW off linux or
	// where memfd_create is refused; Snapshot/Reset on a KindPlain memory).
	ErrUnsupported = errors.New("linmem: not supported")
	// ErrNoSnapshot means Reset was called before any successful Snapshot.
	ErrNoSnapshot = errors.New("linmem: no snapshot")
	// ErrFreed means the Memory was used after Free (wazero frees it when
	// the module is closed).
	ErrFreed = errors.New("linmem: memory freed")
	// ErrLimit means the module's initial memory (its declared minimum) is
	// larger than the allocator's limit, so it cannot be instantiated.
	ErrLimit = errors.New("linmem: initial memory exceeds the limit")
)

// Memory is one instance's linear memory. It is the experimental.LinearMemory
// wazero grows and frees, plus snapshot/reset.
//
// Methods are safe to call from several goroutines, but Snapshot and Reset
// change the bytes the guest sees: call them only while no guest code of the
// owning instance is running.
type Memory interface {
	experimental.LinearMemory
	// Snapshot records the current contents (the first Len() bytes) as the
	// state Reset returns to. A later Snapshot replaces the earlier one.
	Snapshot() error
	// Reset restores the contents recorded by Snapshot. Bytes past the
	// snapshot's length read as zero afterwards. The length (page count)
	// wazero sees does not shrink.
	Reset() error
	// Len is the current length in bytes.
	Len() int
}

// Kind selects the implementation.
type Kind int

const (
	// KindPlain is a Go byte slice with the limit and nothing else:
	// Snapshot and Reset return ErrUnsupported. Use it for instances that
	// are never reused.
	KindPlain Kind = iota
	// KindCopy is a Go byte slice; Snapshot copies the contents aside and
	// Reset copies them back (cost proportional to the memory's length).
	KindCopy
	// KindCoW maps a private copy-on-write view of a memfd holding the
	// snapshot; Reset is madvise(MADV_DONTNEED), whose cost is proportional
	// to the pages dirtied since the last Reset. Linux only.
	KindCoW
)

// String returns "plain", "copy" or "cow".
func (k Kind) String() string {
	switch k {
	case KindPlain:
		return "plain"
	case KindCopy:
		return "copy"
	case KindCoW:
		return "cow"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Allocator creates Memories of one Kind, capped at limit bytes (0 = only
// the module's own max). It holds no per-instance state, so one Allocator
// may be shared by any number of goroutines and instantiations.
//
// To get hold of the Memory wazero allocated, instantiate through
// Allocator.Instantiate, or wrap NewMemory in your own single-use
// experimental.MemoryAllocator and instantiate through the package-level
// Instantiate.
type Allocator struct {
	kind  Kind
	limit uint64
}

// NewAllocator returns an Allocator for kind capped at limit bytes (0 means
// no limit beyond the module's declared maximum). It fails with
// ErrUnsupported for an unknown kind, or for KindCoW when CoWSupported is
// false. It is cheap: nothing is allocated until NewMemory or Allocate.
func NewAllocator(kind Kind, limit uint64) (*Allocator, error) {
	switch kind {
	case KindPlain, KindCopy:
	case KindCoW:
		if !CoWSupported() {
			return nil, fmt.Errorf("linmem: kind %v: %w", kind, ErrUnsupported)
		}
	default:
		return nil, fmt.Errorf("linmem: kind %v: %w", kind, ErrUnsupported)
	}
	return &Allocator{kind: kind, limit: limit}, nil
}

// Kind reports the Kind of the Memories a creates.
func (a *Allocator) Kind() Kind { return a.kind }

// Limit reports a's limit in bytes (0 = none).
func (a *Allocator) Limit() uint64 { return a.limit }

// NewMemory creates a Memory for wazero's Allocate(cap, max) call: cap is
// the suggested initial capacity and max the module's maximum, both in
// bytes. The Memory's length is 0 until the first Reallocate. Only KindCoW
// can fail here (mmap of the reservation).
func (a *Allocator) NewMemory(cap, max uint64) (Memory, error) {
	if a.limit != 0 && a.limit < max {
		max = a.limit
	}
	if cap > max {
		cap = max
	}
	switch a.kind {
	case KindCopy:
		return newGoMemory(cap, max, true), nil
	case KindCoW:
		return newCoWMemory(max)
	}
	return newGoMemory(cap, max, false), nil
}

// Allocate implements experimental.MemoryAllocator. The result is a Memory.
//
// wazero (v1.12) bounds-checks the result of the first Reallocate (the
// module's minimum) and panics if it is nil. So when the minimum exceeds the
// limit, or the KindCoW reservation cannot be mapped, that first Reallocate
// panics with a recognisable value instead of returning nil, and the
// package-level Instantiate turns the panic into an error wrapping ErrLimit
// (or the OS error). Later Reallocates beyond the limit return nil, which
// wazero turns into memory.grow returning -1.
func (a *Allocator) Allocate(cap, max uint64) experimental.LinearMemory {
	m, err := a.NewMemory(cap, max)
	if err != nil {
		return failedMemory{err}
	}
	return m
}

// initPanic is the value a Memory panics with when wazero's initial
// Reallocate cannot be satisfied; Instantiate recovers it.
type initPanic struct{ err error }

func (p *initPanic) Error() string { return p.err.Error() }

// Unwrap returns the underlying error.
func (p *initPanic) Unwrap() error { return p.err }

// FailInit makes the instantiation under way fail with err. Call it from
// a LinearMemory's first Reallocate (wazero's initial allocation), where
// returning nil would make wazero panic; Instantiate recovers it and
// returns err.
func FailInit(err error) { panic(&initPanic{err}) }

// initFailed is called, with no lock held and after the memory released
// whatever it had, when the initial Reallocate(size) cannot be satisfied.
func initFailed(size, max uint64) {
	panic(&initPanic{fmt.Errorf("linmem: module needs %d bytes of memory, limit is %d: %w", size, max, ErrLimit)})
}

// failedMemory is what Allocate returns when the memory could not be
// created: its first Reallocate panics with the cause.
type failedMemory struct{ err error }

func (f failedMemory) Reallocate(uint64) []byte { panic(&initPanic{f.err}) }
func (f failedMemory) Free()                    {}
