//go:build linux

package linmem

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	pageSize = uint64(os.Getpagesize())
	zeroPage = make([]byte, pageSize)
)

var cowSupported = sync.OnceValue(func() bool {
	fd, err := unix.MemfdCreate("linmem-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return false
	}
	_ = unix.Close(fd)
	return true
})

// CoWSupported reports whether KindCoW works on this system: linux, with
// memfd_create allowed (seccomp policies may refuse it). The probe runs once.
func CoWSupported() bool { return cowSupported() }

// mapping owns the reserved address range. It is separate from cowMemory so
// that a GC cleanup can unmap a memory that was never freed (for example
// one leaked by a failed instantiation outside Instantiate).
type mapping struct {
	mu   sync.Mutex
	base unsafe.Pointer // nil once unmapped
	size uintptr
	view unsafe.Pointer // read-only shared view of the snapshot memfd, or nil
	vlen uintptr
}

func (p *mapping) unmap() {
	p.mu.Lock()
	if p.base != nil {
		_ = unix.MunmapPtr(p.base, p.size)
		p.base = nil
	}
	p.unmapView()
	p.mu.Unlock()
}

// unmapView drops the snapshot view. The caller holds p.mu or owns p.
func (p *mapping) unmapView() {
	if p.view != nil {
		_ = unix.MunmapPtr(p.view, p.vlen)
		p.view, p.vlen = nil, 0
	}
}

// cowMemory is a KindCoW Memory. The whole reservation (the memory's
// maximum) is mapped once, so the address wazero sees never changes:
//
//	[0, snapLen)   MAP_PRIVATE view of a memfd holding the snapshot
//	[snapLen, res) MAP_PRIVATE|MAP_ANONYMOUS, reads as zero
//
// Reset is madvise(MADV_DONTNEED) over [0, length): private (dirtied) pages
// are dropped, so the first part reads the memfd again and the second
// reads zero. See DESIGN.md.
type cowMemory struct {
	mu      sync.Mutex
	base    unsafe.Pointer // start of the reservation (immutable)
	res     uint64         // reservation size in bytes (immutable)
	max     uint64         // min(module max, limit) (immutable)
	m       *mapping
	cleanup runtime.Cleanup
	length  uint64 // current (= high-water) length
	snapLen uint64
	snapped bool
	inited  bool
	freed   bool
	// fileBacked is set once Snapshot starts mapping a memfd: from then
	// on the reservation is never recycled.
	fileBacked bool
	scan       scanner // finds private pages for Reset and recycle
}

func roundUp(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

func newCoWMemory(limit uint64) (Memory, error) {
	res := max(roundUp(limit), pageSize)
	if mp := takeSpare(uintptr(res)); mp != nil {
		m := &cowMemory{base: mp.base, res: res, max: limit, m: mp}
		m.cleanup = runtime.AddCleanup(m, (*mapping).unmap, m.m)
		return m, nil
	}
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(res), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("linmem: reserve %d bytes: %w", res, err)
	}
	// One dirty byte must cost one 4 KiB page, not a 2 MiB huge page.
	_ = unix.Madvise(unsafe.Slice((*byte)(p), res), unix.MADV_NOHUGEPAGE)
	m := &cowMemory{base: p, res: res, max: limit, m: &mapping{base: p, size: uintptr(res)}}
	m.cleanup = runtime.AddCleanup(m, (*mapping).unmap, m.m)
	return m, nil
}

// Spare reservations. Creating a memory costs an mmap, then a page fault
// for every page the guest touches, and freeing it an munmap, which on a
// multi-threaded process interrupts the other CPUs to flush their TLBs:
// together most of an isolated invocation of a small guest. So a freed
// memory that never had a snapshot (its whole reservation is anonymous) and
// touched few pages is scrubbed (every page the kernel reports present or
// swapped out is zeroed; the rest read as zero anyway) and kept for the
// next memory of the same size, its pages still mapped.
const (
	maxSpares     = 8
	maxScrubPages = 256 // 1 MiB; bigger memories are unmapped
)

var spares struct {
	mu   sync.Mutex
	list []*mapping
}

// takeSpare returns a scrubbed reservation of size bytes, or nil.
func takeSpare(size uintptr) *mapping {
	spares.mu.Lock()
	defer spares.mu.Unlock()
	for i, mp := range spares.list {
		if mp.size == size {
			last := len(spares.list) - 1
			spares.list[i] = spares.list[last]
			spares.list[last] = nil
			spares.list = spares.list[:last]
			return mp
		}
	}
	return nil
}

// releaseSpares unmaps every spare reservation.
func releaseSpares() {
	spares.mu.Lock()
	list := spares.list
	spares.list = nil
	spares.mu.Unlock()
	for _, mp := range list {
		mp.unmap()
	}
}

// recycle scrubs m's reservation and keeps it as a spare. It reports false,
// leaving m to be unmapped, when m is not eligible or there is no room. The
// caller holds m.mu and has marked m freed.
func (m *cowMemory) recycle() bool {
	if m.fileBacked {
		return false
	}
	spares.mu.Lock()
	room := len(spares.list) < maxSpares
	spares.mu.Unlock()
	if !room {
		return false
	}
	n := roundUp(m.length)
	mem := m.bytes(n)
	if _, ok := m.scan.privatePages(m.base, n, maxScrubPages, func(lo, hi uint64) { clear(mem[lo:hi]) }); !ok {
		return false
	}
	spares.mu.Lock()
	defer spares.mu.Unlock()
	if len(spares.list) >= maxSpares {
		return false
	}
	spares.list = append(spares.list, m.m)
	return true
}

// bytes returns the first n bytes of the reservation.
func (m *cowMemory) bytes(n uint64) []byte { return unsafe.Slice((*byte)(m.base), n) }

// Reallocate implements experimental.LinearMemory. The result always starts
// at the same address.
func (m *cowMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	if m.freed {
		m.mu.Unlock()
		return nil
	}
	if size > m.max {
		first := !m.inited
		m.mu.Unlock()
		if first {
			m.Free()
			initFailed(size, m.max)
		}
		return nil
	}
	m.inited = true
	m.length = max(m.length, size)
	m.mu.Unlock()
	return m.bytes(size)
}

// Free implements experimental.LinearMemory: it unmaps the reservation. It
// is idempotent. The memfd was closed when it was mapped, so no descriptor
// is ever held.
func (m *cowMemory) Free() {
	m.mu.Lock()
	if !m.freed {
		m.freed = true
		m.cleanup.Stop()
		if !m.recycle() {
			m.m.unmap()
		}
	}
	m.mu.Unlock()
}

// Len implements Memory.
func (m *cowMemory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int(m.length)
}

// Snapshot implements Memory. It writes the non-zero pages of the current
// contents into a new memfd (zero pages stay holes), then maps the memfd
// MAP_PRIVATE|MAP_FIXED over [0, Len()) and closes it. The guest sees the
// same bytes before and after.
func (m *cowMemory) Snapshot() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.freed {
		return fmt.Errorf("linmem: snapshot: %w", ErrFreed)
	}
	n := roundUp(m.length)
	if n > 0 {
		if err := m.mapSnapshot(n); err != nil {
			return fmt.Errorf("linmem: snapshot: %w", err)
		}
	}
	m.snapLen, m.snapped = n, true
	return nil
}

func (m *cowMemory) mapSnapshot(n uint64) error {
	m.fileBacked = true
	fd, err := unix.MemfdCreate("linmem-snapshot", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer func() { _ = unix.Close(fd) }()
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		return fmt.Errorf("ftruncate: %w", err)
	}
	src := m.bytes(n)
	for off := uint64(0); off < n; {
		for off < n && bytes.Equal(src[off:off+pageSize], zeroPage) {
			off += pageSize
		}
		end := off
		for end < n && !bytes.Equal(src[end:end+pageSize], zeroPage) {
			end += pageSize
		}
		for off < end {
			w, err := unix.Pwrite(fd, src[off:end], int64(off))
			if err != nil {
				return fmt.Errorf("pwrite: %w", err)
			}
			off += uint64(w)
		}
	}
	// The read-only shared view is where Reset copies dirtied pages back
	// from. It shares the memfd's page cache, so it costs no memory beyond
	// its page tables. Without it Reset falls back to dropping pages.
	m.m.mu.Lock()
	m.m.unmapView()
	if v, err := unix.MmapPtr(fd, 0, nil, uintptr(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_NORESERVE); err == nil {
		m.m.view, m.m.vlen = v, uintptr(n)
	}
	m.m.mu.Unlock()
	_, err = unix.MmapPtr(fd, 0, m.base, uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		// A failed MAP_FIXED may have unmapped part of the range. Put
		// zeroed anonymous memory back so the guest cannot fault (or land
		// in some other mapping); the contents are lost.
		_, _ = unix.MmapPtr(-1, 0, m.base, uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
		m.snapped = false
		return fmt.Errorf("mmap memfd (memory contents lost, discard the instance): %w", err)
	}
	return nil
}

// Reset implements Memory. It asks the kernel which pages of [0, Len())
// hold private data (/proc/self/pagemap): a page the guest wrote since the
// snapshot is a private anonymous copy, present or swapped out, while a page
// it only read maps the memfd's page cache, which is the snapshot, and a
// page it never touched is not mapped. Reset copies the snapshot back into
// the private pages (zeroes them past the snapshot), so they stay mapped
// and the next request writes them without a page fault; everything else
// already reads as the snapshot. Pages that were merely read stay mapped
// too. When pagemap cannot be read, or more than maxCopyPages pages are
// private, it drops the whole range with madvise(MADV_DONTNEED) instead, as
// the first version of Reset always did (see DESIGN.md).
func (m *cowMemory) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.freed:
		return fmt.Errorf("linmem: reset: %w", ErrFreed)
	case !m.snapped:
		return fmt.Errorf("linmem: reset: %w", ErrNoSnapshot)
	}
	n := roundUp(m.length)
	if n == 0 {
		return nil
	}
	if m.m.view != nil && m.restorePrivate(n) {
		return nil
	}
	if err := unix.Madvise(m.bytes(n), unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("linmem: reset: madvise: %w", err)
	}
	return nil
}

// maxCopyPages bounds the private pages Reset copies back (4 MiB). Copied
// pages stay private, so the set only grows; past this bound dropping them
// all costs less than copying them at every reset.
const maxCopyPages = 1024

// restorePrivate copies the snapshot over every private page of [0, n)
// and zeroes private pages past the snapshot. It reports false, having
// changed nothing, when it cannot tell which pages are private or there
// are too many of them.
func (m *cowMemory) restorePrivate(n uint64) bool {
	mem := m.bytes(n)
	view := unsafe.Slice((*byte)(m.m.view), m.snapLen)
	_, ok := m.scan.privatePages(m.base, n, maxCopyPages, func(lo, hi uint64) {
		if lo < m.snapLen {
			e := min(hi, m.snapLen)
			copy(mem[lo:e], view[lo:e])
			lo = e
		}
		if lo < hi {
			clear(mem[lo:hi])
		}
	})
	return ok
}
