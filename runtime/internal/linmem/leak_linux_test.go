//go:build linux

package linmem

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"
)

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countMaps(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// TestCoWNoLeak instantiates, snapshots, dirties, resets and closes 2,000
// CoW memories, plus failed instantiations, and checks that the open file
// descriptors and mappings return to their baseline.
func TestCoWNoLeak(t *testing.T) {
	if !CoWSupported() {
		t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
	}
	a := newAlloc(t, KindCoW, 4*wasmPage)
	ctx, r := newRuntime(t)
	ok := compile(t, ctx, r, modSpec{min: 1, max: 8, data: []byte("x"), dataAt: 1})
	tooBig := compile(t, ctx, r, modSpec{min: 5, max: 8})
	traps := compile(t, ctx, r, modSpec{min: 1, max: 8, trapStart: true})

	round := func(n int) {
		for i := range n {
			mod, mem, err := a.Instantiate(ctx, r, ok, anon)
			if err != nil {
				t.Fatal(err)
			}
			g := guest{t, ctx, mod}
			if err := mem.Snapshot(); err != nil {
				t.Fatal(err)
			}
			g.grow(1)
			g.store(wasmPage+3, byte(i))
			g.store(2, byte(i))
			if err := mem.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := mod.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				if _, _, err := a.Instantiate(ctx, r, tooBig, anon); err == nil {
					t.Fatal("min over limit instantiated")
				}
				if _, _, err := a.Instantiate(ctx, r, traps, anon); err == nil {
					t.Fatal("trapping start instantiated")
				}
			}
		}
	}
	round(50) // warm up the Go heap and wazero
	runtime.GC()
	fds, maps := countFDs(t), countMaps(t)
	round(2000)
	runtime.GC()
	fds2, maps2 := countFDs(t), countMaps(t)
	t.Logf("fds %d -> %d, mappings %d -> %d", fds, fds2, maps, maps2)
	if fds2 > fds {
		t.Errorf("file descriptors leaked: %d -> %d", fds, fds2)
	}
	// The Go heap may add a handful of mappings of its own; a leak would
	// add thousands.
	if maps2 > maps+16 {
		t.Errorf("mappings leaked: %d -> %d", maps, maps2)
	}
}

// TestCoWCleanupUnmapsLeaked checks the GC backstop: a CoW memory dropped
// without Free is unmapped once it is unreachable.
func TestCoWCleanupUnmapsLeaked(t *testing.T) {
	if !CoWSupported() {
		t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
	}
	a := newAlloc(t, KindCoW, 0)
	runtime.GC()
	base := countMaps(t)
	for range 200 {
		mem, err := a.NewMemory(wasmPage, 4*wasmPage)
		if err != nil {
			t.Fatal(err)
		}
		mem.Reallocate(wasmPage)[0] = 1
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	if n := countMaps(t); n < base+200 {
		t.Fatalf("expected the dropped memories to be mapped: %d -> %d", base, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countMaps(t) > base+16 {
		if time.Now().After(deadline) {
			t.Fatalf("leaked memories not unmapped: %d -> %d", base, countMaps(t))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCoWResetCopiesPrivatePages checks the pagemap-guided reset: pages
// the guest wrote are copied back from the snapshot (and stay mapped),
// pages it only read keep mapping the snapshot, and past maxCopyPages
// Reset drops everything instead. Every round must restore the snapshot
// exactly, whichever path it took.
func TestCoWResetCopiesPrivatePages(t *testing.T) {
	if !CoWSupported() {
		t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
	}
	forScanners(t, testCoWResetCopiesPrivatePages)
}

// forScanners runs f with PAGEMAP_SCAN (where the kernel has it) and with
// read(2) of /proc/self/pagemap.
func forScanners(t *testing.T, f func(t *testing.T)) {
	saved := noScan.Load()
	defer noScan.Store(saved)
	for _, read := range []bool{false, true} {
		name := "scan"
		if read {
			name = "read"
		}
		t.Run(name, func(t *testing.T) {
			noScan.Store(read)
			f(t)
		})
	}
}

func testCoWResetCopiesPrivatePages(t *testing.T) {
	const pages = 2*maxCopyPages + 64
	mem, err := newAlloc(t, KindCoW, 0).NewMemory(0, 2*pages*4096)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Free()
	b := mem.Reallocate(pages * 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < pages; i += 1 + rng.IntN(3) {
		b[i*4096+rng.IntN(4096)] = byte(1 + rng.IntN(255))
	}
	want := bytes.Clone(b)
	if err := mem.Snapshot(); err != nil {
		t.Fatal(err)
	}
	cm := mem.(*cowMemory)
	for round, dirty := range []int{1, 50, 0, maxCopyPages + 10, 3, 2 * pages, 7} {
		b = mem.Reallocate(uint64(pages+16) * 4096) // grow past the snapshot
		var sink byte
		for range 100 { // reads keep file pages mapped
			sink ^= b[rng.IntN(pages*4096)]
		}
		_ = sink
		for range dirty {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		b[len(b)-1] = 9
		if err := mem.Reset(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[:len(want)], want) || !bytes.Equal(b[len(want):], make([]byte, len(b)-len(want))) {
			t.Fatalf("round %d (%d writes): Reset did not restore the snapshot exactly", round, dirty)
		}
		priv := privatePages(t, cm)
		switch {
		case dirty <= 50 && priv == 0:
			t.Fatalf("round %d: no private page left mapped: Reset dropped pages instead of copying them back", round)
		case dirty > 2*maxCopyPages && priv != 0:
			t.Fatalf("round %d: %d private pages after a reset of more than maxCopyPages: want them dropped", round, priv)
		}
	}
}

// readSink keeps test reads from being optimised away.
var readSink byte

// privatePages counts the pages of m's snapshot that pagemap reports as
// private. (Past the snapshot, reading maps the zero page, which pagemap
// does not tell from a private page.)
func privatePages(t *testing.T, m *cowMemory) int {
	t.Helper()
	pm := pagemap()
	if pm == nil {
		t.Skip("/proc/self/pagemap is not readable here")
	}
	pages := int(m.snapLen / pageSize)
	raw := make([]byte, 8*pages)
	if _, err := pm.ReadAt(raw, int64(uintptr(m.base)/uintptr(pageSize)*8)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range pages {
		if isPrivate(binary.LittleEndian.Uint64(raw[8*i:])) {
			n++
		}
	}
	return n
}

// TestCoWRecycleScrubs checks spare reservations: a freed memory without
// a snapshot is reused only after every page it touched reads as zero;
// memories with a snapshot, or that touched too many pages, are unmapped.
func TestCoWRecycleScrubs(t *testing.T) {
	if !CoWSupported() {
		t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
	}
	forScanners(t, testCoWRecycleScrubs)
}

func testCoWRecycleScrubs(t *testing.T) {
	if pagemap() == nil {
		t.Skip("/proc/self/pagemap is not readable here; memories are never recycled")
	}
	releaseSpares()
	defer releaseSpares()
	const size = 64 * wasmPage
	a := newAlloc(t, KindCoW, size)
	rng := rand.New(rand.NewPCG(5, 6))
	newMem := func() (*cowMemory, []byte) {
		mem, err := a.NewMemory(wasmPage, size)
		if err != nil {
			t.Fatal(err)
		}
		return mem.(*cowMemory), mem.Reallocate(4 * wasmPage)
	}
	m, b := newMem()
	base := m.base
	for range 2000 {
		b[rng.IntN(len(b))] = byte(1 + rng.IntN(255))
	}
	readSink = b[len(b)-1] // a read maps the zero page
	m.Free()
	for round := range 5 {
		m, _ = newMem()
		if m.base != base {
			t.Fatalf("round %d: the freed reservation was not reused", round)
		}
		b = m.Reallocate(size)
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("round %d: a recycled memory holds data", round)
		}
		for range 50 {
			b[rng.IntN(len(b))] = 7
		}
		m.Free()
	}

	// Too many pages touched: unmapped, not kept.
	m, _ = newMem()
	b = m.Reallocate(size)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	m.Free()
	if takeSpare(uintptr(size)) != nil {
		t.Fatal("a memory that touched more than maxScrubPages pages was kept")
	}

	// A snapshot makes the reservation file-backed: never recycled.
	m, b = newMem()
	b[0] = 1
	if err := m.Snapshot(); err != nil {
		t.Fatal(err)
	}
	m.Free()
	if takeSpare(uintptr(size)) != nil {
		t.Fatal("a memory with a snapshot was kept")
	}
}
