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

// tableLoopModule is bulkLoopModule for the table instructions: fill,
// copy and init take (n, len) and run n loop iterations of table.fill,
// table.copy or table.init over len entries at index 0 (init from a
// passive element segment of 3000 entries). The table has 2^22 entries
// (32 MiB in wazero); spin fills all of them over and over, counting its
// iterations in the exported global "count".
func tableLoopModule() []byte {
	op := func(instr ...any) []byte {
		return bodyL(nil, block(btEmpty, 0x03, btEmpty,
			localGet(0), i32Eqz, brIf(1),
			cat(instr...),
			localGet(0), i32c(1), i32Sub, localSet(0),
			br(0), opEnd))
	}
	elems := make([][]byte, 3000)
	for i := range elems {
		elems[i] = uleb(0)
	}
	return wasmModule(
		sec(1, vec(functype([]byte{i32, i32}, nil), functype(nil, nil))),
		sec(3, vec(uleb(0), uleb(0), uleb(0), uleb(1))),
		sec(4, vec(cat(fref, 0x00, uleb(1<<22)))),
		sec(6, vec(global(i64, mutable, i64c(0)))),
		sec(7, vec(export("fill", 0, 0), export("copy", 0, 1), export("init", 0, 2), export("spin", 0, 3), export("count", 3, 0))),
		sec(9, vec(cat(0x01, 0x00, vec(elems...)))), // passive, funcref: function 0
		sec(10, vec(
			op(i32c(0), 0xd0, fref, localGet(1), misc(17, uleb(0))),
			op(i32c(0), i32c(7), localGet(1), misc(14, uleb(0), uleb(0))),
			op(i32c(0), i32c(0), localGet(1), misc(12, uleb(0), uleb(0))),
			body(0x03, btEmpty,
				i32c(0), 0xd0, fref, i32c(1<<22), misc(17, uleb(0)),
				globalGet(0), i64c(1), 0x7c, globalSet(0),
				br(0), opEnd),
		)),
	)
}

// tickModel runs the functions of an instrumented bulkLoopModule or
// tableLoopModule and follows $tick: a call of n iterations passes the
// loop header n+1 times and charges each iteration's instruction,
// yielding right after a charge that used $tick up.
type tickModel struct {
	t      *testing.T
	mod    api.Module
	tick   api.Global
	model  int32
	yields int
}

func newTickModel(t *testing.T, plain []byte) *tickModel {
	t.Helper()
	instrumented, err := InstrumentLoops(plain)
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
	t.Cleanup(func() { _ = r.Close(ctx) })
	mod, err := r.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	return &tickModel{t: t, mod: mod, tick: mod.ExportedGlobal(tickName), model: YieldInterval}
}

// call calls fn(n, length), whose instruction costs charge ticks, and
// checks $tick against the model.
func (m *tickModel) call(fn string, n, length uint32, charge int32) {
	m.t.Helper()
	if _, err := m.mod.ExportedFunction(fn).Call(context.Background(), uint64(n), uint64(length)); err != nil {
		m.t.Fatalf("%s(%d, %d): %v", fn, n, length, err)
	}
	for i := uint32(0); i <= n; i++ {
		if m.model--; m.model < 1 {
			m.model = YieldInterval
			m.yields++
		}
		if i < n {
			if m.model -= charge; m.model < 1 {
				m.model = YieldInterval
				m.yields++
			}
		}
	}
	if got := int32(m.tick.Get()); got != m.model {
		m.t.Fatalf("after %s(%d, %d): tick = %d, want %d", fn, n, length, got, m.model)
	}
}

// TestInstrumentLoopsBulkTick checks that the bulk memory instructions are
// charged by length against the periodic exit's counter: len >> 10 ticks,
// on top of the tick of the loop iteration, so that a loop filling most of
// memory in every iteration yields to Go at every iteration rather than
// every YieldInterval iterations.
func TestInstrumentLoopsBulkTick(t *testing.T) {
	m := newTickModel(t, bulkLoopModule())
	m.call("fill", 1, 1023, 0)
	m.call("fill", 3, 1024, 1)
	m.call("fill", 2, 5000, 4)
	m.call("copy", 2, 5000, 4)
	m.call("init", 2, 3000, 2)
	m.call("fill", 2, 1<<20, 1024)

	// Filling 64 MiB, most of memory, yields before the fill runs (and
	// the loop header after it counts one iteration).
	for i := range 5 {
		before := m.yields
		m.call("fill", 1, 64<<20, 65536)
		if m.yields != before+1 || m.tick.Get() != YieldInterval-1 {
			t.Fatalf("call %d of fill(1, 64 MiB): tick = %d, %d yields, want %d and 1", i, m.tick.Get(), m.yields-before, YieldInterval-1)
		}
	}
	before := m.yields
	m.call("copy", 20, 64<<20, 65536)
	if m.yields-before != 20 {
		t.Fatalf("copy(20, 64 MiB) yielded %d times, want 20", m.yields-before)
	}
}

// TestInstrumentLoopsTableTick is TestInstrumentLoopsBulkTick for the
// table instructions: len >> 7 ticks (an entry moves 8 bytes), so that a
// loop filling a large table in every iteration yields at every iteration.
// They used to be charged nothing.
func TestInstrumentLoopsTableTick(t *testing.T) {
	m := newTickModel(t, tableLoopModule())
	m.call("fill", 1, 127, 0)
	m.call("fill", 3, 128, 1)
	m.call("fill", 2, 5000, 39)
	m.call("copy", 2, 5000, 39)
	m.call("init", 2, 3000, 23)
	m.call("fill", 2, 1<<17, 1024)

	// Filling the whole table yields before the fill runs.
	for i := range 5 {
		before := m.yields
		m.call("fill", 1, 1<<22, 1<<15)
		if m.yields != before+1 || m.tick.Get() != YieldInterval-1 {
			t.Fatalf("call %d of fill(1, 2^22): tick = %d, %d yields, want %d and 1", i, m.tick.Get(), m.yields-before, YieldInterval-1)
		}
	}
	before := m.yields
	m.call("copy", 20, 1<<21, 1<<14)
	if m.yields-before != 20 {
		t.Fatalf("copy(20, 2^21) yielded %d times, want 20", m.yields-before)
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
	checkSpinYields(t, bulkLoopModule())
}

// TestInstrumentLoopsTableLetsTheGoRuntimeRun is the same with a guest
// that fills a table of 2^22 entries (32 MiB) in every iteration. Before
// the table instructions were charged, five collections took seconds.
func TestInstrumentLoopsTableLetsTheGoRuntimeRun(t *testing.T) {
	checkSpinYields(t, tableLoopModule())
}

// checkSpinYields runs the spin function of plain, instrumented, and
// checks that garbage collections meanwhile wait for about one of its
// iterations each.
func checkSpinYields(t *testing.T, plain []byte) {
	t.Helper()
	mod, done := spinInstrumented(t, plain)
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
