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
}

func (p *mapping) unmap() {
	p.mu.Lock()
	if p.base != nil {
		_ = unix.MunmapPtr(p.base, p.size)
		p.base = nil
	}
	p.mu.Unlock()
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
}

func roundUp(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

func newCoWMemory(limit uint64) (Memory, error) {
	res := max(roundUp(limit), pageSize)
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
		m.m.unmap()
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

// Reset implements Memory: madvise(MADV_DONTNEED) over [0, Len()). Its cost
// is proportional to the pages touched since the last Reset.
func (m *cowMemory) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.freed:
		return fmt.Errorf("linmem: reset: %w", ErrFreed)
	case !m.snapped:
		return fmt.Errorf("linmem: reset: %w", ErrNoSnapshot)
	}
	if n := roundUp(m.length); n > 0 {
		if err := unix.Madvise(m.bytes(n), unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("linmem: reset: madvise: %w", err)
		}
	}
	return nil
}
