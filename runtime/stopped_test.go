package runtime_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// stopCase is a guest that the host stops while it waits (or works) in a
// host call, and that then returns normally, before any check of the stop.
type stopCase struct {
	name  string
	guest string
	mode  runtime.Mode
	reset runtime.Reset
}

// sleepers are the guests that sleep 100 s once, without a loop, in every
// mode: after the sleep they answer 200, or (cmd-sleep-silent) write
// nothing, or (cmd-answer-sleep) answered before it.
var sleepers = []stopCase{
	{"isolated-command", "cmd-sleep-answer", runtime.ModeIsolated, runtime.ResetNone},
	{"isolated-command-silent", "cmd-sleep-silent", runtime.ModeIsolated, runtime.ResetNone},
	{"isolated-command-answered-first", "cmd-answer-sleep", runtime.ModeIsolated, runtime.ResetNone},
	{"isolated-reactor", "sleep-answer", runtime.ModeIsolated, runtime.ResetNone},
	{"pooled", "sleep-answer", runtime.ModePooled, runtime.ResetNone},
	{"pooled-copy", "sleep-answer", runtime.ModePooled, runtime.ResetCopy},
	{"pooled-cow", "sleep-answer", runtime.ModePooled, runtime.ResetCoW},
}

// checkStopped checks that a call the host stopped failed with want and
// its HTTP status, served no response, and left no instance behind.
func checkStopped(t *testing.T, f *runtime.Function, res *runtime.Result, err, want error, status int) {
	t.Helper()
	if res != nil {
		t.Errorf("served %d %q from a stopped call", res.Response.StatusOrDefault(), res.Response.Body)
	}
	if !errors.Is(err, want) || errors.Is(err, runtime.ErrBadResponse) {
		t.Fatalf("ended with %v, want %v alone", err, want)
	}
	if got := runtime.HTTPStatus(err); got != status {
		t.Errorf("HTTPStatus = %d, want %d", got, status)
	}
	if st := f.Stats(); st.Instances != 0 {
		t.Errorf("a stopped instance was kept: %+v", st)
	}
}

// A guest whose sleep outlasts its timeout fails with ErrTimeout (504),
// whatever it does once the host woke it: an answer of 200 after the
// sleep (the guest acted on a sleep that was cut short) is not served,
// nothing written is not ErrBadResponse, and a response written before
// the sleep does not become the response. Every mode. The host used to
// serve the first and the third, and call the second a bad response.
func TestSleepPastTimeoutFails(t *testing.T) {
	e := newEngine(t)
	const timeout = 200 * time.Millisecond
	for _, c := range sleepers {
		t.Run(c.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: c.name, Module: wat(t, c.guest), Mode: c.mode, Reset: c.reset,
				Limits: runtime.Limits{Timeout: timeout}})
			for round := range 2 { // a pool's next instance too
				res, d, err := timedGet(t, f, "/")
				checkStopped(t, f, res, err, runtime.ErrTimeout, http.StatusGatewayTimeout)
				if d > 50*timeout {
					t.Fatalf("round %d: the 100 s sleep was not cut short: returned after %v", round, d)
				}
			}
		})
	}
}

// A guest stopped by its CPU budget while it works in a host call
// (random_get, on its own thread) fails with ErrCPUBudget (503), although
// it returns normally and answers 200 once the call ends.
func TestCPUBudgetStopInHostCallFails(t *testing.T) {
	e := newEngine(t)
	for _, c := range []stopCase{
		{"isolated-reactor", "random-answer", runtime.ModeIsolated, runtime.ResetNone},
		{"pooled", "random-answer", runtime.ModePooled, runtime.ResetNone},
		{"pooled-cow", "random-answer", runtime.ModePooled, runtime.ResetCoW},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: c.name, Module: wat(t, c.guest), Mode: c.mode, Reset: c.reset,
				Limits: runtime.Limits{Timeout: time.Minute, CPUTime: 5 * time.Millisecond}})
			res, err := invoke(t, f, get("/"))
			checkStopped(t, f, res, err, runtime.ErrCPUBudget, http.StatusServiceUnavailable)
		})
	}
}

// A sleeping guest stopped because its caller went away, or because the
// engine closed, fails with ErrCanceled or ErrEngineClosed, although it
// answers 200 once woken.
func TestStoppedSleepFailsWithItsReason(t *testing.T) {
	cases := []stopCase{
		{"isolated-command", "cmd-sleep-answer", runtime.ModeIsolated, runtime.ResetNone},
		{"isolated-reactor", "sleep-answer", runtime.ModeIsolated, runtime.ResetNone},
		{"pooled", "sleep-answer", runtime.ModePooled, runtime.ResetNone},
	}
	long := runtime.Limits{Timeout: 10 * time.Minute}
	t.Run("caller", func(t *testing.T) {
		sink := &runningSink{}
		e := newEngine(t, func(c *runtime.Config) { c.Logs = sink })
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				f := load(t, e, runtime.FunctionSpec{Name: c.name, Module: wat(t, c.guest), Mode: c.mode, Limits: long})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				sink.n.Store(0)
				done := make(chan error, 1)
				go func() {
					res, err := f.Invoke(ctx, get("/"))
					if res != nil {
						err = errors.New("served a response")
					}
					done <- err
				}()
				waitFor(t, 30*time.Second, "the guest to sleep", func() bool { return sink.n.Load() == 1 })
				cancel()
				select {
				case err := <-done:
					checkStopped(t, f, nil, err, runtime.ErrCanceled, 499)
				case <-time.After(30 * time.Second):
					t.Fatal("still sleeping 30 s after its caller went away")
				}
			})
		}
	})
	t.Run("close", func(t *testing.T) {
		sink := &runningSink{}
		e := newEngine(t, func(c *runtime.Config) { c.Logs = sink })
		type outcome struct {
			f   *runtime.Function
			res *runtime.Result
			err error
		}
		results := make(chan outcome, len(cases))
		for _, c := range cases {
			f := load(t, e, runtime.FunctionSpec{Name: c.name, Module: wat(t, c.guest), Mode: c.mode, Limits: long})
			go func() {
				res, err := f.Invoke(context.Background(), get("/"))
				results <- outcome{f, res, err}
			}()
		}
		waitFor(t, 30*time.Second, "every guest to sleep", func() bool { return sink.n.Load() == int64(len(cases)) })
		if err := e.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for range cases {
			select {
			case o := <-results:
				t.Run(o.f.Name(), func(t *testing.T) {
					if o.res != nil {
						t.Errorf("served %d %q from a stopped call", o.res.Response.StatusOrDefault(), o.res.Response.Body)
					}
					if !errors.Is(o.err, runtime.ErrEngineClosed) {
						t.Errorf("ended with %v, want ErrEngineClosed", o.err)
					}
				})
			case <-time.After(30 * time.Second):
				t.Fatal("still sleeping 30 s after Close returned")
			}
		}
	})
}
