//go:build linux

package linmem

import (
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Finding the pages of a range that may differ from what a reader of the
// range's backing expects: pages that are private (anonymous, not the page
// cache of a file) and present or swapped out. Mappings of the shared zero
// page are left out when the kernel can tell them apart (PAGEMAP_SCAN);
// including them would only cost a copy.
//
// Linux 6.7 and later answer with the PAGEMAP_SCAN ioctl on
// /proc/self/pagemap, which returns ranges; older kernels through read(2)
// of one 8-byte entry per page, several times slower. See the kernel's
// Documentation/admin-guide/mm/pagemap.rst.

// pagemap bits of the read(2) interface.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61 // file page or shared anonymous
)

// PAGEMAP_SCAN (include/uapi/linux/fs.h).
const (
	pageIsFile    = 1 << 2
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
	pageIsPFNZero = 1 << 5
	// _IOWR('f', 16, struct pm_scan_arg) with a 96-byte argument.
	ioctlPagemapScan = 3<<30 | 96<<16 | 'f'<<8 | 16
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages       uint64
	categoryInverted, categoryMask, categoryAnyofMask, returnMask uint64
}

type pageRegion struct{ start, end, categories uint64 }

var pagemap = sync.OnceValue(func() *os.File {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	return f
})

// noScan is set once PAGEMAP_SCAN turns out to be unavailable.
var noScan atomic.Bool

// scanner finds the private pages of a range, reusing its buffers.
type scanner struct {
	regions []pageRegion
	ents    []uint64
}

// privatePages calls fn for each run [lo, hi) of private pages of the n
// bytes at base (offsets in bytes), in increasing order, and returns the
// number of pages it reported. It returns ok false, having called fn for
// nothing, when the kernel cannot say, or when more than limit pages are
// private.
func (s *scanner) privatePages(base unsafe.Pointer, n uint64, limit int, fn func(lo, hi uint64)) (count int, ok bool) {
	pm := pagemap()
	if pm == nil {
		return 0, false
	}
	if !noScan.Load() {
		count, ok, supported := s.scan(pm, base, n, limit, fn)
		if supported {
			return count, ok
		}
		noScan.Store(true)
	}
	return s.read(pm, base, n, limit, fn)
}

// scan uses PAGEMAP_SCAN. supported is false when the kernel lacks it.
func (s *scanner) scan(pm *os.File, base unsafe.Pointer, n uint64, limit int, fn func(lo, hi uint64)) (count int, ok, supported bool) {
	if s.regions == nil {
		s.regions = make([]pageRegion, 16)
	}
	start, end := uint64(uintptr(base)), uint64(uintptr(base))+n
	runs := s.regions[:0]
	for addr := start; addr < end; {
		arg := pmScanArg{
			size: uint64(unsafe.Sizeof(pmScanArg{})), start: addr, end: end,
			vec:    uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.regions[len(runs):cap(s.regions)])))),
			vecLen: uint64(cap(s.regions) - len(runs)),
			// Not a file page and not the zero page; present or swapped.
			categoryInverted:  pageIsFile | pageIsPFNZero,
			categoryMask:      pageIsFile | pageIsPFNZero,
			categoryAnyofMask: pageIsPresent | pageIsSwapped,
			returnMask:        pageIsPresent | pageIsSwapped,
		}
		if arg.vecLen == 0 { // grow and go on from addr
			s.regions = append(s.regions[:cap(s.regions)], make([]pageRegion, cap(s.regions))...)
			runs = s.regions[:len(runs)]
			continue
		}
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, pm.Fd(), ioctlPagemapScan, uintptr(unsafe.Pointer(&arg)))
		if errno != 0 {
			switch errno {
			case unix.ENOTTY, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOSYS:
				if addr == start {
					return 0, false, false
				}
			}
			return 0, false, true
		}
		runs = s.regions[:len(runs)+int(r)]
		if arg.walkEnd <= addr || arg.walkEnd > end {
			return 0, false, true
		}
		addr = arg.walkEnd
	}
	for _, rg := range runs {
		if rg.start < start || rg.end > end || rg.end < rg.start {
			return 0, false, true
		}
		count += int((rg.end - rg.start) / pageSize)
	}
	if count > limit {
		return count, false, true
	}
	for _, rg := range runs {
		fn(rg.start-start, rg.end-start)
	}
	return count, true, true
}

// read uses one pagemap entry per page.
func (s *scanner) read(pm *os.File, base unsafe.Pointer, n uint64, limit int, fn func(lo, hi uint64)) (count int, ok bool) {
	pages := int(n / pageSize)
	if cap(s.ents) < pages {
		s.ents = make([]uint64, pages)
	}
	ents := s.ents[:pages]
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(ents))), 8*pages)
	if k, err := pm.ReadAt(raw, int64(uintptr(base)/uintptr(pageSize)*8)); err != nil || k != len(raw) {
		return 0, false
	}
	for _, e := range ents {
		if isPrivate(e) {
			count++
		}
	}
	if count > limit {
		return count, false
	}
	for i, e := range ents {
		if isPrivate(e) {
			lo := uint64(i) * pageSize
			fn(lo, lo+pageSize)
		}
	}
	return count, true
}

// isPrivate reports whether a pagemap entry may hold data that differs from
// the range's backing: a page that is present or swapped out and is not a
// file page. A mapping of the zero page also qualifies here (read(2) does
// not tell it apart); copying over it costs one fault, once.
func isPrivate(e uint64) bool { return e&(pmPresent|pmSwapped) != 0 && e&pmFile == 0 }
