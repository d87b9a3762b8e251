package linmem

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// forKinds runs f for each kind available here.
func forKinds(t *testing.T, kinds []Kind, f func(t *testing.T, k Kind)) {
	for _, k := range kinds {
		t.Run(k.String(), func(t *testing.T) {
			if k == KindCoW && !CoWSupported() {
				t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
			}
			f(t, k)
		})
	}
}

var (
	allKinds   = []Kind{KindPlain, KindCopy, KindCoW}
	resetKinds = []Kind{KindCopy, KindCoW}
)

func newAlloc(t testing.TB, k Kind, limit uint64) *Allocator {
	t.Helper()
	a, err := NewAllocator(k, limit)
	if err != nil {
		t.Fatalf("NewAllocator(%v, %d): %v", k, limit, err)
	}
	return a
}

// instantiate compiles s and instantiates it with a fresh Memory of a.
func instantiate(t testing.TB, a *Allocator, s modSpec) (guest, Memory) {
	t.Helper()
	ctx, r := newRuntime(t)
	mod, mem, err := a.Instantiate(ctx, r, compile(t, ctx, r, s), anon)
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	if mem == nil {
		t.Fatal("no Memory captured")
	}
	return guest{t, ctx, mod}, mem
}

func TestNewAllocator(t *testing.T) {
	if _, err := NewAllocator(Kind(42), 0); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown kind: err = %v, want ErrUnsupported", err)
	}
	_, err := NewAllocator(KindCoW, 0)
	if CoWSupported() != (err == nil) || (err != nil && !errors.Is(err, ErrUnsupported)) {
		t.Errorf("KindCoW: CoWSupported() = %v, err = %v", CoWSupported(), err)
	}
}

func TestSnapshotReset(t *testing.T) {
	forKinds(t, resetKinds, func(t *testing.T, k Kind) {
		g, mem := instantiate(t, newAlloc(t, k, 0), modSpec{min: 1, max: 8, data: []byte("hello"), dataAt: 100})
		if err := mem.Reset(); !errors.Is(err, ErrNoSnapshot) {
			t.Fatalf("Reset before Snapshot: %v, want ErrNoSnapshot", err)
		}
		g.store(200, 7)      // before the snapshot: kept
		g.store(5*4096+1, 3) // a later OS page: kept
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 3; round++ {
			g.store(200, 8)
			g.store(300, 9)
			g.store(100, 'H')
			g.store(wasmPage-1, 1)
			if err := mem.Reset(); err != nil {
				t.Fatal(err)
			}
			want := map[uint32]byte{100: 'h', 104: 'o', 200: 7, 300: 0, 5*4096 + 1: 3, wasmPage - 1: 0}
			for addr, v := range want {
				if got := g.load(addr); got != v {
					t.Errorf("round %d: load(%d) = %d, want %d", round, addr, got, v)
				}
			}
			if b, _ := g.mod.Memory().Read(100, 5); string(b) != "hello" {
				t.Errorf("round %d: api.Memory sees %q", round, b)
			}
		}
		if g.size() != 1 || mem.Len() != wasmPage {
			t.Errorf("size = %d pages, Len = %d", g.size(), mem.Len())
		}
	})
}

func TestGrowAfterSnapshot(t *testing.T) {
	forKinds(t, resetKinds, func(t *testing.T, k Kind) {
		g, mem := instantiate(t, newAlloc(t, k, 0), modSpec{min: 1, max: 8})
		g.store(10, 1)
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 2; round++ {
			if old := g.grow(2); round == 0 && old != 1 {
				t.Fatalf("grow = %d, want 1", old)
			}
			g.store(2*wasmPage+5, 42)
			g.store(10, 2)
			if err := mem.Reset(); err != nil {
				t.Fatal(err)
			}
			if got := g.load(2*wasmPage + 5); got != 0 {
				t.Errorf("round %d: grown region reads %d after Reset, want 0", round, got)
			}
			if got := g.load(10); got != 1 {
				t.Errorf("round %d: load(10) = %d, want 1", round, got)
			}
			// The length does not shrink.
			if want := uint32(3 + 2*round); g.size() != want || mem.Len() != int(want)*wasmPage {
				t.Errorf("round %d: size = %d, Len = %d, want %d pages", round, g.size(), mem.Len(), want)
			}
		}
	})
}

func TestResnapshot(t *testing.T) {
	forKinds(t, resetKinds, func(t *testing.T, k Kind) {
		g, mem := instantiate(t, newAlloc(t, k, 0), modSpec{min: 1, max: 8})
		g.store(1, 1)
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
		g.store(1, 2)
		g.grow(1)
		g.store(wasmPage+1, 3)
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
		g.store(1, 9)
		g.store(wasmPage+1, 9)
		g.store(wasmPage+2, 9)
		if err := mem.Reset(); err != nil {
			t.Fatal(err)
		}
		if a, b, c := g.load(1), g.load(wasmPage+1), g.load(wasmPage+2); a != 2 || b != 3 || c != 0 {
			t.Errorf("after reset to second snapshot: %d %d %d, want 2 3 0", a, b, c)
		}
	})
}

// TestResetRestoresExactly drives a Memory directly, as wazero would, with
// random contents including zero and non-zero pages.
func TestResetRestoresExactly(t *testing.T) {
	forKinds(t, resetKinds, func(t *testing.T, k Kind) {
		mem, err := newAlloc(t, k, 0).NewMemory(wasmPage, 16*wasmPage)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Free()
		rng := rand.New(rand.NewPCG(1, 2))
		b := mem.Reallocate(4 * wasmPage)
		for i := range 4 * wasmPage / 4096 {
			if rng.IntN(2) == 0 {
				for j := range 4096 {
					b[i*4096+j] = byte(rng.Uint32())
				}
			}
		}
		want := bytes.Clone(b)
		if err := mem.Snapshot(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Fatal("Snapshot changed the contents")
		}
		for range 3 {
			for range 200 {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
			b = mem.Reallocate(6 * wasmPage)
			b[5*wasmPage] = 1
			if err := mem.Reset(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[:len(want)], want) || !bytes.Equal(b[len(want):], make([]byte, len(b)-len(want))) {
				t.Fatal("Reset did not restore the snapshot exactly")
			}
		}
	})
}

func TestLimit(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, k Kind) {
		for _, limit := range []uint64{2 * wasmPage, 2*wasmPage + 100} {
			g, mem := instantiate(t, newAlloc(t, k, limit), modSpec{min: 1, max: 8})
			if got := g.grow(1); got != 1 {
				t.Fatalf("grow(1) = %d, want 1", got)
			}
			if got := g.grow(1); got != -1 {
				t.Fatalf("grow past the limit = %d, want -1", got)
			}
			if got := g.grow(100); got != -1 {
				t.Fatalf("grow(100) = %d, want -1", got)
			}
			g.store(2*wasmPage-1, 5)
			if g.load(2*wasmPage-1) != 5 || g.size() != 2 || mem.Len() != 2*wasmPage {
				t.Fatalf("module broken after refused grow: size %d", g.size())
			}
		}
		// Without a limit the module's own max applies.
		g, _ := instantiate(t, newAlloc(t, k, 0), modSpec{min: 1, max: 3})
		if g.grow(3) != -1 || g.grow(2) != 1 || g.grow(1) != -1 {
			t.Error("module max not enforced")
		}
	})
}

func TestMinOverLimit(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, k Kind) {
		a := newAlloc(t, k, 2*wasmPage)
		ctx, r := newRuntime(t)
		mod, mem, err := a.Instantiate(ctx, r, compile(t, ctx, r, modSpec{min: 4, max: 8}), anon)
		if !errors.Is(err, ErrLimit) || mod != nil || mem != nil {
			t.Fatalf("Instantiate = %v, %v, %v; want ErrLimit", mod, mem, err)
		}
		// The runtime is still usable.
		g, _ := instantiate(t, a, modSpec{min: 1, max: 8})
		g.store(1, 1)
	})
}

// TestDirectAllocatorPanics documents why Instantiate exists: wazero v1.12
// panics when the initial Reallocate fails. If this starts failing, wazero
// changed and Instantiate's recover may no longer be needed.
func TestDirectAllocatorPanics(t *testing.T) {
	a := newAlloc(t, KindCopy, wasmPage)
	ctx, r := newRuntime(t)
	c := compile(t, ctx, r, modSpec{min: 2, max: 8})
	defer func() {
		p, ok := recover().(*initPanic)
		if !ok || !errors.Is(p, ErrLimit) {
			t.Errorf("recovered %v, want *initPanic wrapping ErrLimit", p)
		}
	}()
	_, err := r.InstantiateModule(experimental.WithMemoryAllocator(ctx, a), c, anon)
	t.Errorf("InstantiateModule returned %v without panicking", err)
}

func TestTrapInStartFreesMemory(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, k Kind) {
		ctx, r := newRuntime(t)
		c := compile(t, ctx, r, modSpec{min: 1, max: 8, trapStart: true})
		var lm experimental.LinearMemory
		alloc := experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
			lm = newAlloc(t, k, 0).Allocate(cap, max)
			return lm
		})
		if _, err := Instantiate(ctx, r, c, anon, alloc); err == nil {
			t.Fatal("instantiating a module whose start function traps succeeded")
		}
		if err := lm.(Memory).Snapshot(); !errors.Is(err, ErrFreed) {
			t.Errorf("memory not freed after failed instantiation: %v", err)
		}
	})
}

func TestNoMemory(t *testing.T) {
	ctx, r := newRuntime(t)
	c, err := r.CompileModule(ctx, []byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	mod, mem, err := newAlloc(t, KindCopy, 0).Instantiate(ctx, r, c, anon)
	if err != nil || mod == nil || mem != nil {
		t.Fatalf("Instantiate = %v, %v, %v; want a module and no Memory", mod, mem, err)
	}
}

func TestPlainUnsupported(t *testing.T) {
	mem, _ := newAlloc(t, KindPlain, 0).NewMemory(0, wasmPage)
	mem.Reallocate(wasmPage)
	if err := mem.Snapshot(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Snapshot: %v, want ErrUnsupported", err)
	}
	if err := mem.Reset(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Reset: %v, want ErrUnsupported", err)
	}
}

func TestFreeTwice(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, k Kind) {
		mem, err := newAlloc(t, k, 0).NewMemory(wasmPage, 4*wasmPage)
		if err != nil {
			t.Fatal(err)
		}
		mem.Reallocate(wasmPage)[0] = 1
		mem.Free()
		mem.Free()
		if b := mem.Reallocate(wasmPage); b != nil {
			t.Error("Reallocate after Free returned memory")
		}
		for _, f := range []func() error{mem.Snapshot, mem.Reset} {
			if err := f(); !errors.Is(err, ErrFreed) {
				t.Errorf("after Free: %v, want ErrFreed", err)
			}
		}
	})
}

func TestCloseFrees(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, k Kind) {
		g, mem := instantiate(t, newAlloc(t, k, 0), modSpec{min: 1, max: 8})
		if err := g.mod.Close(g.ctx); err != nil {
			t.Fatal(err)
		}
		if err := mem.Snapshot(); !errors.Is(err, ErrFreed) {
			t.Errorf("Snapshot after module Close: %v, want ErrFreed", err)
		}
		mem.Free() // after wazero's Free: still safe
	})
}

func TestCoWAddressStable(t *testing.T) {
	if !CoWSupported() {
		t.Skip("KindCoW needs memfd_create, which this system refuses; the copy kind is tested instead")
	}
	g, mem := instantiate(t, newAlloc(t, KindCoW, 0), modSpec{min: 1, max: 64})
	before, _ := g.mod.Memory().Read(0, 1)
	_ = mem.Snapshot()
	g.grow(63)
	_ = mem.Reset()
	after, _ := g.mod.Memory().Read(0, 1)
	if unsafe.SliceData(before) != unsafe.SliceData(after) {
		t.Error("the CoW memory moved")
	}
}

func TestConcurrent(t *testing.T) {
	forKinds(t, resetKinds, func(t *testing.T, k Kind) {
		a := newAlloc(t, k, 4*wasmPage)
		ctx, r := newRuntime(t)
		c := compile(t, ctx, r, modSpec{min: 1, max: 8})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 20 {
					mod, mem, err := a.Instantiate(ctx, r, c, anon)
					if err != nil {
						t.Error(err)
						return
					}
					g := guest{t, ctx, mod}
					g.store(8, byte(w))
					_ = mem.Snapshot()
					for j := range 10 {
						g.store(uint32(j), byte(i))
						g.grow(1)
						_ = mem.Len()
						if err := mem.Reset(); err != nil || g.load(8) != byte(w) {
							t.Errorf("worker %d: reset: %v, load %d", w, err, g.load(8))
						}
					}
					_ = mod.Close(ctx)
				}
			})
		}
		wg.Wait()
	})
}
