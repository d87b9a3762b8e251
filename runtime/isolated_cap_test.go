package runtime_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// Isolated invocations, each with an instance of its own, are capped at
// MaxInstances like pooled ones: further requests wait up to
// QueueTimeout and then fail with ErrBusy, and run once a slot is free.
// Uncapped, concurrent requests multiplied the memory limit (64 isolated
// instances of a module with 80 MB tables took a node to 2.3 GB).
func TestIsolatedConcurrencyCapped(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: wat(t, "cmd-sleep-answer"), Mode: runtime.ModeIsolated,
		Limits: runtime.Limits{MaxInstances: 2, QueueTimeout: 300 * time.Millisecond, Timeout: 3 * time.Second}})
	var wg sync.WaitGroup
	for range 2 { // both slots, for about the 3 s timeout
		wg.Go(func() { _, _ = f.Invoke(context.Background(), get("/")) })
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	_, err := f.Invoke(context.Background(), get("/"))
	if !errors.Is(err, runtime.ErrBusy) || !strings.Contains(err.Error(), "all 2 isolated invocations stayed busy") {
		t.Fatalf("a third isolated invocation with 2 running: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("ErrBusy after %v, want after the 300ms queue timeout", d)
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Invoke(ctx, get("/")); errors.Is(err, runtime.ErrBusy) {
		t.Fatalf("with the slots free again: %v", err)
	}
}
