package runtime

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/gojinn/gojinn/runtime/internal/linmem"
)

// memKind selects the linear-memory implementation of an instance.
type memKind int

const (
	memPlain memKind = iota // limit only
	memCopy                 // snapshot and reset by copying
	memCoW                  // snapshot in a memfd, reset with madvise
)

func resolveReset(r Reset) Reset {
	if r == ResetAuto {
		if linmem.CoWSupported() {
			return ResetCoW
		}
		return ResetCopy
	}
	return r
}

func memKindFor(r Reset) memKind {
	switch resolveReset(r) {
	case ResetCoW:
		return memCoW
	case ResetCopy:
		return memCopy
	}
	return memPlain
}

// memory is an instance's linear memory, as seen by the engine.
type memory struct {
	lm linmem.Memory
	// refused records that a grow was refused because of the limit, so
	// that the call's failure is reported as ErrMemoryLimit. It belongs to
	// one call: a guest may handle the refusal (C and Rust guests check
	// memory.grow's -1) and go on serving, and a later, unrelated failure
	// of the same instance is no memory limit. See clearRefused.
	refused atomic.Bool
	// nodeRefused records that a grow was refused because the engine's
	// memory budget (Config.MaxGuestMemory) was spent, for ErrNodeMemory.
	// Cleared with refused.
	nodeRefused atomic.Bool
	snapLen     int    // the length at the last snapshot
	limit       uint64 // the function's memory limit less the module's tables
}

// clearRefused forgets a refused grow; guardedFor clears it before every
// call into the guest. m may be nil (no instance yet).
func (m *memory) clearRefused() {
	if m != nil {
		m.refused.Store(false)
		m.nodeRefused.Store(false)
	}
}

// snapshot records the memory every request of a reset instance starts
// from.
func (m *memory) snapshot() error {
	m.snapLen = m.lm.Len()
	return m.lm.Snapshot()
}

func (m *memory) reset() error { return m.lm.Reset() }

// grownBy is how many bytes the memory grew since the last snapshot. An
// instance whose memory grew cannot be reset to a consistent state: the
// memory cannot shrink, and the guest's allocator, restored with the rest
// of the snapshot, would not know the pages past the snapshot's end. The
// Go runtime, for one, grows memory by what it needs beyond its own
// record of the end (runtime.sbrk), so every grown page would be lost to
// it and the next request that needs them would reach the memory limit
// early.
func (m *memory) grownBy() uint64 { return uint64(max(0, m.lm.Len()-m.snapLen)) }

// memAllocator is a single-use wazero MemoryAllocator: it creates the
// memory of one instantiation and keeps a handle on it.
type memAllocator struct {
	kind   memKind
	limit  uint64
	budget *memBudget
	mem    *memory
}

func newMemAllocator(kind memKind, limit uint64, budget *memBudget) *memAllocator {
	return &memAllocator{kind: kind, limit: limit, budget: budget}
}

// Allocate implements experimental.MemoryAllocator.
func (a *memAllocator) Allocate(capacity, maximum uint64) experimental.LinearMemory {
	kind := linmemKinds[a.kind]
	if kind == linmem.KindPlain && linmem.CoWSupported() {
		// A reserved mapping faults pages in on first touch: about 2 us
		// against ~0.5 ms to allocate and zero a Go slice of the initial
		// memory, which matters for isolated mode. No snapshot is taken.
		kind = linmem.KindCoW
	}
	la, err := linmem.NewAllocator(kind, a.limit)
	if err != nil { // only for CoW where unsupported; resolveReset avoids it
		la, _ = linmem.NewAllocator(linmem.KindCopy, a.limit)
	}
	lm, err := la.NewMemory(capacity, maximum)
	if err != nil {
		return la.Allocate(capacity, maximum) // fails instantiation with err
	}
	a.mem = &memory{lm: lm, limit: a.limit}
	return &trackedLinearMemory{m: a.mem, budget: a.budget}
}

// instantiate instantiates m's compiled code with memory from a. See
// linmem.Instantiate for why it is not rt.InstantiateModule directly. a's
// limit is the function's memory limit, which m's tables share with the
// linear memory: the memory gets what they leave (module.linearLimit).
func (a *memAllocator) instantiate(ctx context.Context, rt wazero.Runtime, m *module, cfg wazero.ModuleConfig) (api.Module, error) {
	a.limit = m.linearLimit(a.limit)
	return linmem.Instantiate(ctx, rt, m.compiled, cfg, a)
}

var linmemKinds = [...]linmem.Kind{memPlain: linmem.KindPlain, memCopy: linmem.KindCopy, memCoW: linmem.KindCoW}

// trackedLinearMemory records refused grows so a failure can be reported
// as ErrMemoryLimit (or ErrNodeMemory) rather than a generic trap, and
// charges the memory's size to the engine's budget.
type trackedLinearMemory struct {
	m       *memory
	budget  *memBudget
	charged atomic.Int64 // bytes taken from budget; Free gives them back
	inited  bool         // wazero's initial Reallocate happened
}

func (t *trackedLinearMemory) Reallocate(size uint64) []byte {
	init := !t.inited
	t.inited = true
	delta := int64(size) - t.charged.Load()
	if !t.budget.take(delta) {
		t.m.refused.Store(true)
		t.m.nodeRefused.Store(true)
		if init {
			linmem.FailInit(fmt.Errorf("%w: an instance needs %d bytes of linear memory, and the node's guests hold %d of the %d bytes runtime.max_guest_memory allows",
				ErrNodeMemory, size, t.budget.inUse(), t.budget.limit))
		}
		return nil
	}
	grown := false
	defer func() {
		if !grown { // refused, or the initial allocation failed (a panic Instantiate recovers)
			t.budget.give(delta)
		}
	}()
	b := t.m.lm.Reallocate(size)
	if b == nil {
		t.m.refused.Store(true)
		return nil
	}
	grown = true
	if delta > 0 {
		t.charged.Add(delta)
	}
	return b
}

func (t *trackedLinearMemory) Free() {
	t.budget.give(t.charged.Swap(0))
	t.m.lm.Free()
}
