//go:build linux

package linmem

import (
	"bytes"
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
