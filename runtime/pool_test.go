package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// With reset, a request never sees what the previous request left in
// globals or on the heap; without it, state persists by design.
func TestResetIsolatesRequests(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		reset     runtime.Reset
		wantPrev  string
		wantCount string
	}{
		{runtime.ResetNone, "prev=first-secret", "counter=1"},
		{runtime.ResetCopy, "prev=", "counter=0"},
		{runtime.ResetCoW, "prev=", "counter=0"},
		{runtime.ResetAuto, "prev=", "counter=0"},
	} {
		t.Run(string(tc.reset), func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "state-" + string(tc.reset), Module: abuseReactor(t),
				Mode: runtime.ModePooled, Reset: tc.reset, Limits: runtime.Limits{MaxInstances: 1}})
			mustInvoke(t, f, get("/state?secret=first-secret"))
			for i := 0; i < 3; i++ {
				_, body := mustInvoke(t, f, get(fmt.Sprintf("/state?secret=s%d", i)))
				if tc.reset == runtime.ResetNone {
					if i == 0 && (!strings.Contains(body, tc.wantPrev) || !strings.Contains(body, tc.wantCount)) {
						t.Fatalf("without reset state should persist: %q", body)
					}
					continue
				}
				if body != "prev= counter=0" {
					t.Fatalf("request %d saw the previous request's state: %q", i, body)
				}
			}
			if st := f.Stats(); st.Instances != 1 {
				t.Fatalf("want the single instance reused, stats %+v", st)
			}
		})
	}
}

// A big request body and response go through the heap; reset must still
// hand the next request a clean instance, including after memory grew.
func TestResetAfterMemoryGrowth(t *testing.T) {
	e := newEngine(t)
	for _, r := range []runtime.Reset{runtime.ResetCopy, runtime.ResetCoW} {
		f := load(t, e, runtime.FunctionSpec{Name: "grow-" + string(r), Module: abuseReactor(t), Mode: runtime.ModePooled,
			Reset: r, Limits: runtime.Limits{MaxInstances: 1}})
		big := strings.Repeat("z", 3<<20)
		_, body := mustInvoke(t, f, request("POST", "/body", []byte(big)))
		if body != big {
			t.Fatalf("%s: echo of a 3 MiB body came back with %d bytes", r, len(body))
		}
		for i := 0; i < 3; i++ {
			if _, body := mustInvoke(t, f, get("/state?secret=x")); body != "prev= counter=0" {
				t.Fatalf("%s: after growth, request saw %q", r, body)
			}
		}
	}
}

func TestPoolBoundsConcurrency(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, QueueTimeout: 100 * time.Millisecond}})
	mustInvoke(t, f, get("/ok")) // warm the single instance

	done := occupy(t, f, "/sleep?n=1500", "the slow request")
	_, err := invoke(t, f, get("/ok"))
	if !errors.Is(err, runtime.ErrBusy) || runtime.HTTPStatus(err) != 503 {
		t.Fatalf("second request: got %v (status %d), want ErrBusy/503", err, runtime.HTTPStatus(err))
	}
	if err := <-done; err != nil {
		t.Fatalf("slow request: %v", err)
	}
	if _, body := mustInvoke(t, f, get("/ok")); body != "ok" {
		t.Fatalf("after the busy period: %q", body)
	}
}

func TestPoolWaitsForAFreeInstance(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, QueueTimeout: 30 * time.Second}})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.Invoke(context.Background(), get("/sleep?n=50"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("queued request failed: %v", err)
		}
	}
	if st := f.Stats(); st.Instances != 1 {
		t.Fatalf("pool grew past MaxInstances: %+v", st)
	}
}

// Idle pools shrink to zero instances, idle compiled code is evicted, and
// both come back on the next request.
func TestIdleShrinkAndEviction(t *testing.T) {
	e := newEngine(t, func(c *runtime.Config) {
		c.PoolIdleTimeout = 50 * time.Millisecond
		c.CompiledIdleTimeout = 150 * time.Millisecond
		c.JanitorInterval = 10 * time.Millisecond
	})
	f := load(t, e, runtime.FunctionSpec{Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	mustInvoke(t, f, get("/"))
	if st := f.Stats(); st.Instances != 1 || !st.Compiled {
		t.Fatalf("after one request: %+v", st)
	}
	waitFor(t, 10*time.Second, "pool to shrink to zero", func() bool { return f.Stats().Instances == 0 })
	waitFor(t, 10*time.Second, "compiled code to be evicted", func() bool { return !f.Stats().Compiled })
	if st, body := mustInvoke(t, f, get("/")); st != 200 || body != "hello, wasm!\n" {
		t.Fatalf("after eviction: %d %q", st, body)
	}
	if st := f.Stats(); st.Instances != 1 || !st.Compiled {
		t.Fatalf("after refill: %+v", st)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Hammer a pooled function from many goroutines (run with -race): every
// answer is right and the pool ends within its bound.
func TestPoolHammer(t *testing.T) {
	e := newEngine(t)
	for _, r := range []runtime.Reset{runtime.ResetNone, runtime.ResetCoW} {
		f := load(t, e, runtime.FunctionSpec{Name: "hammer-" + string(r), Module: abuseReactor(t), Mode: runtime.ModePooled,
			Reset: r, Limits: runtime.Limits{MaxInstances: 3, QueueTimeout: time.Minute}})
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					want := fmt.Sprintf("g%d-%d", g, i)
					res, err := f.Invoke(context.Background(), request("POST", "/body", []byte(want)))
					if err != nil {
						errs <- err
						return
					}
					if string(res.Response.Body) != want {
						errs <- fmt.Errorf("got %q, want %q", res.Response.Body, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if st := f.Stats(); st.Instances > 3 || st.InFlight != 0 {
			t.Fatalf("%s: stats after hammer %+v", r, st)
		}
	}
}

// Replacing a function while requests run lets them finish on the old
// version and sends new requests to the new one.
func TestReplaceWhileInFlight(t *testing.T) {
	e := newEngine(t)
	old := load(t, e, runtime.FunctionSpec{Name: "f", Version: "v1", Module: abuseReactor(t), Mode: runtime.ModePooled})
	done := make(chan error, 1)
	go func() {
		_, err := old.Invoke(context.Background(), get("/sleep?n=300"))
		done <- err
	}()
	waitFor(t, 10*time.Second, "the slow request to start", func() bool { return old.Stats().InFlight > 0 })
	load(t, e, runtime.FunctionSpec{Name: "f", Version: "v2", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	if err := <-done; err != nil {
		t.Fatalf("in-flight request on the replaced version failed: %v", err)
	}
	res, err := e.Invoke(context.Background(), "f", get("/"))
	if err != nil || string(res.Response.Body) != "hello, wasm!\n" {
		t.Fatalf("new version: %v %v", res, err)
	}
	if _, err := old.Invoke(context.Background(), get("/ok")); !errors.Is(err, runtime.ErrEngineClosed) {
		t.Fatalf("invoking a replaced version: %v, want ErrEngineClosed", err)
	}
}

// The pool hands out the instance released last: a function whose load
// dropped keeps using one warm instance (its memory still in the CPU's
// caches) rather than cycling through every instance a burst made, and the
// others stay idle until the pool shrinks.
func TestPoolReusesTheLastReleasedInstance(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled, Reset: runtime.ResetNone,
		Limits: runtime.Limits{MaxInstances: 4, QueueTimeout: 30 * time.Second}})
	// A burst of three at once makes three instances.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { mustInvoke(t, f, get("/sleep?n=200")) })
	}
	wg.Wait()
	if st := f.Stats(); st.Instances != 3 || st.Idle != 3 {
		t.Fatalf("after the burst: %+v, want 3 instances, all idle", st)
	}
	// One at a time, the requests meet the same instance: its per-instance
	// counter (no reset) goes up by one each time.
	for i := range 5 {
		if _, body := mustInvoke(t, f, get("/state?secret=s")); !strings.HasSuffix(body, fmt.Sprintf("counter=%d", i)) {
			t.Fatalf("request %d: %q; want counter=%d: the same instance each time", i, body, i)
		}
	}
}

// A caller waiting for an instance gets the slot of one that broke: it
// creates a new instance instead of waiting out its queue timeout.
func TestPoolHandsABrokenInstancesSlotToAWaiter(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, Timeout: 500 * time.Millisecond, QueueTimeout: 5 * time.Second}})
	mustInvoke(t, f, get("/ok"))
	broke := occupy(t, f, "/loop", "the looping request")
	// This one waits: the only instance loops until its timeout.
	if _, body := mustInvoke(t, f, get("/ok")); body != "ok" {
		t.Fatalf("waiting request: %q", body)
	}
	if err := <-broke; !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("looping request: %v, want ErrTimeout", err)
	}
	if st := f.Stats(); st.Instances != 1 {
		t.Fatalf("after: %+v, want the one new instance", st)
	}
}

// A caller that gives up waiting (its context ends) fails with
// ErrCanceled and leaves the pool as it was: the next caller still gets
// the instance when it is released.
func TestPoolWaiterGivesUp(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxInstances: 1, QueueTimeout: 30 * time.Second}})
	mustInvoke(t, f, get("/ok"))
	slow := occupy(t, f, "/sleep?n=700", "the slow request")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := f.Invoke(ctx, get("/ok")); !errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("caller that gave up: %v, want ErrCanceled", err)
	}
	if _, body := mustInvoke(t, f, get("/ok")); body != "ok" {
		t.Fatalf("next caller: %q", body)
	}
	if err := <-slow; err != nil {
		t.Fatalf("slow request: %v", err)
	}
	if st := f.Stats(); st.Instances != 1 || st.Idle != 1 {
		t.Fatalf("after: %+v, want one idle instance", st)
	}
}

// occupy starts a request for path on f in the background and waits until
// it (what) holds f's only instance; its error arrives on the channel.
func occupy(t *testing.T, f *runtime.Function, path, what string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := f.Invoke(context.Background(), get(path))
		done <- err
	}()
	waitBusy(t, f, what)
	return done
}

// waitBusy waits until a request (what) holds f's only instance.
func waitBusy(t *testing.T, f *runtime.Function, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st := f.Stats(); st.InFlight == 0 || st.Idle != 0; st = f.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never took the instance: %+v", what, st)
		}
		time.Sleep(time.Millisecond)
	}
}
