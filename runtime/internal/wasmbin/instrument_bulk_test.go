package wasmbin

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// bulkLoopModule exports fill, copy and init: each takes (n, len) and
// runs n loop iterations of its bulk memory instruction over len bytes at
// address 0 (init from a passive data segment of 3000 bytes). The memory
// has 1025 pages, 64 MiB and a page; spin fills 64 MiB over and over,
// counting its iterations in the exported global "count".
func bulkLoopModule() []byte {
	op := func(instr []byte) []byte {
		return bodyL(nil, block(btEmpty, 0x03, btEmpty,
			localGet(0), i32Eqz, brIf(1),
			i32c(0), i32c(0), localGet(1), instr,
			localGet(0), i32c(1), i32Sub, localSet(0),
			br(0), opEnd))
	}
	return wasmModule(
		sec(1, vec(functype([]byte{i32, i32}, nil), functype(nil, nil))),
		sec(3, vec(uleb(0), uleb(0), uleb(0), uleb(1))),
		sec(5, vec(cat(0x00, uleb(1025)))),
		sec(6, vec(global(i64, mutable, i64c(0)))),
		sec(7, vec(export("fill", 0, 0), export("copy", 0, 1), export("init", 0, 2), export("spin", 0, 3), export("count", 3, 0))),
		sec(12, uleb(1)),
		sec(10, vec(
			op(misc(11, 0x00)),
			op(misc(10, 0x00, 0x00)),
			op(misc(8, uleb(0), 0x00)),
			body(0x03, btEmpty,
				i32c(0), i32c(7), i32c(64<<20), misc(11, 0x00),
				globalGet(0), i64c(1), 0x7c, globalSet(0),
				br(0), opEnd),
		)),
		sec(11, vec(cat(0x01, uleb(3000), bytes.Repeat([]byte{7}, 3000)))),
	)
}

// TestInstrumentLoopsBulkTick checks that the bulk memory instructions are
// charged by length against the periodic exit's counter: len >> 10 ticks,
// on top of the tick of the loop iteration, so that a loop filling most of
// memory in every iteration yields to Go at every iteration rather than
// every YieldInterval iterations.
func TestInstrumentLoopsBulkTick(t *testing.T) {
	instrumented, err := InstrumentLoops(bulkLoopModule())
	if err != nil {
		t.Fatal(err)
	}
	out, exports, err := ExportMutableGlobals(instrumented)
	if err != nil {
		t.Fatal(err)
	}
	var tickName string
	for _, e := range exports {
		if e.Index == 2 { // count, stop, tick
			tickName = e.Name
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	tick := mod.ExportedGlobal(tickName).(api.MutableGlobal)

	// model follows $tick: a call of n iterations passes the loop header
	// n+1 times and charges each iteration's instruction, yielding right
	// after a charge that used $tick up.
	model, yields := int32(YieldInterval), 0
	call := func(fn string, n, length uint32, charge int32) {
		t.Helper()
		if _, err := mod.ExportedFunction(fn).Call(ctx, uint64(n), uint64(length)); err != nil {
			t.Fatalf("%s(%d, %d): %v", fn, n, length, err)
		}
		for i := uint32(0); i <= n; i++ {
			if model--; model < 1 {
				model = YieldInterval
				yields++
			}
			if i < n {
				if model -= charge; model < 1 {
					model = YieldInterval
					yields++
				}
			}
		}
		if got := int32(tick.Get()); got != model {
			t.Fatalf("after %s(%d, %d): tick = %d, want %d", fn, n, length, got, model)
		}
	}
	call("fill", 1, 1023, 0)
	call("fill", 3, 1024, 1)
	call("fill", 2, 5000, 4)
	call("copy", 2, 5000, 4)
	call("init", 2, 3000, 2)
	call("fill", 2, 1<<20, 1024)

	// Filling 64 MiB, most of memory, yields before the fill runs (and
	// the loop header after it counts one iteration).
	for i := range 5 {
		before := yields
		call("fill", 1, 64<<20, 65536)
		if yields != before+1 || tick.Get() != YieldInterval-1 {
			t.Fatalf("call %d of fill(1, 64 MiB): tick = %d, %d yields, want %d and 1", i, tick.Get(), yields-before, YieldInterval-1)
		}
	}
	before := yields
	call("copy", 20, 64<<20, 65536)
	if yields-before != 20 {
		t.Fatalf("copy(20, 64 MiB) yielded %d times, want 20", yields-before)
	}
}

// TestInstrumentLoopsBulkLetsTheGoRuntimeRun runs a guest that fills most
// of its memory in every loop iteration, which takes microseconds, not
// nanoseconds (64 MiB: milliseconds), and collects garbage meanwhile.
// Before bulk instructions were charged by length, every stop-the-world
// waited for up to YieldInterval iterations of the guest, seconds (a 125 MB
// fill per iteration kept runtime.GC waiting 19.6 s); now it waits for
// about one.
func TestInstrumentLoopsBulkLetsTheGoRuntimeRun(t *testing.T) {
	mod, done := spinInstrumented(t, bulkLoopModule())
	stopped := false
	defer func() {
		if !stopped {
			mod.ExportedGlobal(StopGlobalName).(api.MutableGlobal).Set(1)
			<-done
		}
	}()
	count := mod.ExportedGlobal("count")
	deadline := time.Now().Add(10 * time.Second)
	for count.Get() < 100 {
		if time.Now().After(deadline) {
			t.Fatal("spin did not start within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	// The time of one iteration, as the guest runs now.
	c0, t0 := count.Get(), time.Now()
	time.Sleep(100 * time.Millisecond)
	iter := time.Since(t0) / time.Duration(max(count.Get()-c0, 1))

	const gcs = 5
	start := time.Now()
	for range gcs {
		runtime.GC()
	}
	gc := time.Since(start)
	// Each collection waits for the guest's next yield: about one
	// iteration. Waiting for YieldInterval iterations would take 500 on
	// average.
	if limit := gcs*50*iter + 100*time.Millisecond; gc > limit {
		t.Errorf("%d GCs took %v with the guest spinning (%v per iteration), more than %v", gcs, gc, iter, limit)
	}
	t.Logf("%d GCs took %v with the guest spinning, %v per iteration", gcs, gc, iter)

	mod.ExportedGlobal(StopGlobalName).(api.MutableGlobal).Set(1)
	stopped = true
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin returned %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spin still running 10s after the stop global was set")
	}
}
