package runtime_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The linear memory of all instances together is bounded
// (Config.MaxGuestMemory): a guest growing within its own limit but past
// the node's bound fails with ErrNodeMemory (503, the setting named), not
// ErrMemoryLimit; so does an instance whose initial memory does not fit;
// the memory comes back when instances close, and then they fit again.
func TestGuestMemoryBound(t *testing.T) {
	const bound = 16 << 20
	e := newEngine(t, func(c *runtime.Config) { c.MaxGuestMemory = bound })
	if used, limit := e.GuestMemory(); used != 0 || limit != bound {
		t.Fatalf("GuestMemory() = %d, %d; want 0, %d", used, limit, bound)
	}
	grow := load(t, e, runtime.FunctionSpec{Name: "grow", Module: runtimetest.WAT(t, "runtime/testdata/wat/growmem.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{MemoryBytes: 64 << 20}})
	_, err := invoke(t, grow, get("/"))
	if !errors.Is(err, runtime.ErrNodeMemory) || runtime.HTTPStatus(err) != http.StatusServiceUnavailable ||
		!strings.Contains(err.Error(), "runtime.max_guest_memory") {
		t.Fatalf("a guest growing past the node's bound within its own limit: %v (status %d), want ErrNodeMemory, 503, the setting named",
			err, runtime.HTTPStatus(err))
	}

	// Without a node bound the same guest reaches its own limit.
	free := newEngine(t, func(c *runtime.Config) { c.MaxGuestMemory = -1 })
	g2 := load(t, free, runtime.FunctionSpec{Name: "grow", Module: runtimetest.WAT(t, "runtime/testdata/wat/growmem.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{MemoryBytes: 4 << 20}})
	if _, err := invoke(t, g2, get("/")); !errors.Is(err, runtime.ErrMemoryLimit) {
		t.Fatalf("without a node bound: %v, want ErrMemoryLimit", err)
	}
	if _, limit := free.GuestMemory(); limit != 0 {
		t.Fatalf("no bound reported as %d", limit)
	}

	// An instance whose initial memory (32 MiB) does not fit at all.
	big := load(t, e, runtime.FunctionSpec{Name: "big", Module: runtimetest.WAT(t, "runtime/testdata/wat/bigmem.wat"),
		Mode: runtime.ModeIsolated, Limits: runtime.Limits{MemoryBytes: 64 << 20}})
	if _, err := invoke(t, big, get("/")); !errors.Is(err, runtime.ErrNodeMemory) || !strings.Contains(err.Error(), "needs 33554432 bytes") {
		t.Fatalf("an instance larger than the node's bound: %v, want ErrNodeMemory naming its size", err)
	}

	// Failed instances are discarded and give their memory back; a
	// function within the bound then runs, and its pooled instance holds
	// its memory until it is unloaded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		used, _ := e.GuestMemory()
		if used == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still charged with no instance alive", used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tiny := load(t, e, runtime.FunctionSpec{Name: "tiny", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"), Mode: runtime.ModePooled})
	if st, _ := mustInvoke(t, tiny, get("/")); st != 200 {
		t.Fatalf("a small function under the bound: %d", st)
	}
	if used, _ := e.GuestMemory(); used <= 0 || used > 1<<20 {
		t.Fatalf("a warm tiny instance holds %d bytes of the bound", used)
	}
	if err := e.Unload(context.Background(), "tiny"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for used, _ := e.GuestMemory(); used != 0; used, _ = e.GuestMemory() {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still charged after the function was unloaded", used)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
