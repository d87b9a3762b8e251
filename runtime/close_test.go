package runtime_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// runningSink counts the guest log lines "running": the close test guests
// log it when they start their endless work.
type runningSink struct{ n atomic.Int64 }

func (s *runningSink) Log(rec runtime.LogRecord) {
	if rec.Message == "running" {
		s.n.Add(1)
	}
}

// blockingKV is a store whose Get blocks until the call's context ends.
type blockingKV struct {
	*runtime.MemKV
	entered atomic.Int64
}

func (k *blockingKV) Get(ctx context.Context, _, _ string, _ bool) ([]byte, uint64, error) {
	k.entered.Add(1)
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

// Engine.Close while guests run stops them first, in every mode: guests
// writing to 40 MiB of linear memory (whose memory Close used to unmap or
// recycle under them, a fatal SIGSEGV), an idle call doing the same, a
// guest asleep in WASI, guests waiting in a KV call, and a request queued
// for a busy pool. Every invocation ends with ErrEngineClosed, the process
// survives, and Close returns soon and without error.
func TestEngineCloseStopsRunningGuests(t *testing.T) {
	sink := &runningSink{}
	kv := &blockingKV{MemKV: runtime.NewMemKV()}
	e := newEngine(t, func(c *runtime.Config) { c.Logs = sink; c.KV = kv })
	long := runtime.Limits{Timeout: 10 * time.Minute, QueueTimeout: 10 * time.Minute, MaxInstances: 2}

	// The idle call: the 64th request of an instance starts it.
	idle := load(t, e, runtime.FunctionSpec{Name: "idle", Module: wat(t, "idle-touch-loop"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1}})
	for range 64 {
		mustInvoke(t, idle, get("/"))
	}

	cases := []struct {
		name  string
		guest string
		mode  runtime.Mode
		reset runtime.Reset
		calls int
		limit runtime.Limits
	}{
		{"isolated-command", "cmd-touch-loop", runtime.ModeIsolated, runtime.ResetNone, 2, long},
		{"isolated-reactor", "touch-loop", runtime.ModeIsolated, runtime.ResetNone, 2, long},
		{"pooled", "touch-loop", runtime.ModePooled, runtime.ResetNone, 2, long},
		{"pooled-copy", "touch-loop", runtime.ModePooled, runtime.ResetCopy, 2, long},
		{"pooled-cow", "touch-loop", runtime.ModePooled, runtime.ResetCoW, 2, long},
		{"pooled-sleep", "sleep-loop", runtime.ModePooled, runtime.ResetNone, 1, long},
		{"isolated-kv", "kv-wait-loop", runtime.ModeIsolated, runtime.ResetNone, 1, long},
		{"pooled-kv", "kv-wait-loop", runtime.ModePooled, runtime.ResetNone, 1, long},
	}
	type outcome struct {
		name string
		err  error
	}
	results := make(chan outcome, 32)
	started := 0
	for _, c := range cases {
		f := load(t, e, runtime.FunctionSpec{Name: c.name, Module: wat(t, c.guest), Mode: c.mode, Reset: c.reset, Limits: c.limit})
		for range c.calls {
			started++
			go func() {
				_, err := f.Invoke(context.Background(), get("/"))
				results <- outcome{c.name, err}
			}()
		}
	}
	// The queued request: the pool's one instance is busy.
	queued := load(t, e, runtime.FunctionSpec{Name: "queued", Module: wat(t, "touch-loop"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{Timeout: 10 * time.Minute, QueueTimeout: 10 * time.Minute, MaxInstances: 1}})
	for range 2 {
		started++
		go func() {
			_, err := queued.Invoke(context.Background(), get("/"))
			results <- outcome{"queued", err}
		}()
	}
	const running = 2*5 + 1 + 1 // touch-loop calls, sleep, the queued pool's busy instance
	waitFor(t, 30*time.Second, "every guest to run", func() bool {
		// The idle call logs nothing (it serves no request); it holds the
		// instance until it returns.
		st := idle.Stats()
		return sink.n.Load() >= running && kv.entered.Load() >= 2 && queued.Stats().InFlight == 2 && st.Idle == 0 && st.Instances == 1
	})

	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- e.Close(context.Background()) }()
	const bound = 10 * time.Second
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-timer.C:
		t.Fatalf("Close still waiting after %v", bound)
	}
	t.Logf("Close returned after %v", time.Since(start))
	for range started {
		select {
		case o := <-results:
			if !errors.Is(o.err, runtime.ErrEngineClosed) {
				t.Errorf("%s: invocation ended with %v, want ErrEngineClosed", o.name, o.err)
			}
		case <-timer.C:
			t.Fatalf("invocations still running %v after Close began", bound)
		}
	}
	if _, err := idle.Invoke(context.Background(), get("/")); !errors.Is(err, runtime.ErrEngineClosed) {
		t.Errorf("an invocation after Close: %v, want ErrEngineClosed", err)
	}
}

// Close while requests keep arriving, in every mode: each call either
// answers or fails with ErrEngineClosed (none traps or crashes, whether
// it began before Close, as Close passed, or after), and every caller
// sees ErrEngineClosed soon after. Run with -race.
func TestEngineCloseUnderLoad(t *testing.T) {
	e := newEngine(t)
	var fns []*runtime.Function
	for _, c := range []struct {
		mode  runtime.Mode
		reset runtime.Reset
	}{{runtime.ModeIsolated, runtime.ResetNone}, {runtime.ModePooled, runtime.ResetNone},
		{runtime.ModePooled, runtime.ResetCopy}, {runtime.ModePooled, runtime.ResetCoW}} {
		fns = append(fns, load(t, e, runtime.FunctionSpec{Name: string(c.mode) + "-" + string(c.reset), Module: wat(t, "tiny-reactor"),
			Mode: c.mode, Reset: c.reset, Limits: runtime.Limits{MaxInstances: 2, QueueTimeout: time.Minute}}))
	}
	var served atomic.Int64
	errs := make(chan error, 2*len(fns))
	for _, f := range fns {
		for range 2 {
			go func() {
				for {
					if _, err := f.Invoke(context.Background(), get("/")); err != nil {
						errs <- err
						return
					}
					served.Add(1)
				}
			}()
		}
	}
	waitFor(t, 30*time.Second, "requests to be served", func() bool { return served.Load() >= 200 })
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for range cap(errs) {
		select {
		case err := <-errs:
			if !errors.Is(err, runtime.ErrEngineClosed) {
				t.Errorf("a caller ended with %v, want ErrEngineClosed", err)
			}
		case <-timer.C:
			t.Fatal("callers still running 10s after Close")
		}
	}
}

// Engine.Close while a pooled instance is being created, its _initialize
// waiting in a KV call: the call is cancelled and the guest returns
// normally, before it could notice the stop, yet the creation fails with
// ErrEngineClosed, the reason the guard stopped it (newInstance used to
// call any such stop a cancellation, which only the pool relabelled), for
// a request (a pool creating an instance) and for Check.
func TestEngineCloseDuringInstanceCreation(t *testing.T) {
	for _, check := range []bool{false, true} {
		name := "invoke"
		if check {
			name = "check"
		}
		t.Run(name, func(t *testing.T) {
			kv := &blockingKV{MemKV: runtime.NewMemKV()}
			e := newEngine(t, func(c *runtime.Config) { c.KV = kv })
			spec := runtime.FunctionSpec{Name: "init-kv", Version: "v1", Module: wat(t, "init-kv-wait"), Mode: runtime.ModePooled,
				Limits: runtime.Limits{Timeout: 10 * time.Minute}}
			done := make(chan error, 1)
			if check {
				go func() { done <- e.Check(context.Background(), spec) }()
			} else {
				f := load(t, e, spec)
				go func() {
					_, err := f.Invoke(context.Background(), get("/"))
					done <- err
				}()
			}
			waitFor(t, 30*time.Second, "_initialize to wait in the KV call", func() bool { return kv.entered.Load() == 1 })
			if err := e.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, runtime.ErrEngineClosed) || errors.Is(err, runtime.ErrCanceled) || errors.Is(err, runtime.ErrInvalidModule) {
					t.Fatalf("ended with %v, want ErrEngineClosed alone", err)
				}
				if status := runtime.HTTPStatus(err); status != http.StatusServiceUnavailable {
					t.Errorf("HTTPStatus = %d, want 503", status)
				}
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("still running 10s after Close returned")
			}
		})
	}
}
