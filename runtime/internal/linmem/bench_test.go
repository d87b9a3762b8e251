package linmem

import (
	"fmt"
	"testing"
	"time"
)

const (
	benchPages = 56 // wasm pages: 3.5 MiB
	osPage     = 4096
)

// newBenchMemory returns a 3.5 MiB Memory whose every 4 KiB page holds
// non-zero data, snapshotted.
func newBenchMemory(b *testing.B, k Kind) (Memory, []byte) {
	b.Helper()
	if k == KindCoW && !CoWSupported() {
		b.Skip("KindCoW not supported here")
	}
	mem, err := newAlloc(b, k, 0).NewMemory(benchPages*wasmPage, benchPages*wasmPage)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(mem.Free)
	buf := mem.Reallocate(benchPages * wasmPage)
	for i := range buf {
		buf[i] = byte(i%251 + 1)
	}
	if err := mem.Snapshot(); err != nil {
		b.Fatal(err)
	}
	return mem, buf
}

// BenchmarkReset measures one request's worth of memory work: dirty N
// 4 KiB pages (one byte each, spread over the memory; for CoW each write
// takes a copy-on-write fault, the cost a request pays to touch a page
// after a reset) and then Reset. dirty-ns/op and reset-ns/op split ns/op.
func BenchmarkReset(b *testing.B) {
	total := benchPages * wasmPage / osPage
	for _, k := range []Kind{KindCopy, KindCoW} {
		for _, n := range []int{1, 16, 64, total} {
			label := fmt.Sprint(n)
			if n == total {
				label = "all"
			}
			b.Run(fmt.Sprintf("%v/dirty=%s", k, label), func(b *testing.B) {
				mem, buf := newBenchMemory(b, k)
				stride := total / n
				var dirty, reset time.Duration
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					t0 := time.Now()
					for p := range n {
						buf[p*stride*osPage+i%osPage] = byte(i)
					}
					t1 := time.Now()
					if err := mem.Reset(); err != nil {
						b.Fatal(err)
					}
					dirty += t1.Sub(t0)
					reset += time.Since(t1)
				}
				b.ReportMetric(float64(dirty.Nanoseconds())/float64(b.N), "dirty-ns/op")
				b.ReportMetric(float64(reset.Nanoseconds())/float64(b.N), "reset-ns/op")
			})
		}
	}
}

// BenchmarkAllocate measures creating, sizing (as wazero's instantiation
// does) and freeing a 3.5 MiB Memory.
func BenchmarkAllocate(b *testing.B) {
	for _, k := range allKinds {
		b.Run(k.String(), func(b *testing.B) {
			if k == KindCoW && !CoWSupported() {
				b.Skip("KindCoW not supported here")
			}
			a := newAlloc(b, k, 0)
			for b.Loop() {
				lm := a.Allocate(benchPages*wasmPage, benchPages*wasmPage)
				lm.Reallocate(benchPages * wasmPage)
				lm.Free()
			}
		})
	}
}

// BenchmarkSnapshot measures the first Snapshot of a fresh 3.5 MiB memory
// with every page non-zero (the worst case; CoW skips zero pages), as done
// once per pooled instance.
func BenchmarkSnapshot(b *testing.B) {
	for _, k := range []Kind{KindCopy, KindCoW} {
		b.Run(k.String(), func(b *testing.B) {
			if k == KindCoW && !CoWSupported() {
				b.Skip("KindCoW not supported here")
			}
			a := newAlloc(b, k, 0)
			for b.Loop() {
				b.StopTimer()
				mem, err := a.NewMemory(benchPages*wasmPage, benchPages*wasmPage)
				if err != nil {
					b.Fatal(err)
				}
				buf := mem.Reallocate(benchPages * wasmPage)
				for i := range buf {
					buf[i] = byte(i%251 + 1)
				}
				b.StartTimer()
				if err := mem.Snapshot(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				mem.Free()
				b.StartTimer()
			}
		})
	}
}
