package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Causes recorded when the host stops an invocation.
var (
	errCauseTimeout = errors.New("wall-clock timeout")
	errCauseCPU     = errors.New("CPU-time budget exhausted")
	errCauseCaller  = errors.New("the caller's context ended")
	errCauseClosed  = errors.New("the engine closed")
)

// guard bounds one invocation in wall-clock time and CPU time with a
// single timer. The invocation runs on a locked OS thread so its CPU time
// can be read from that thread's CPU clock. With a CPU budget below the
// timeout the clock is read at the start, at the end, and by the timer
// whenever the budget could have been spent (CPU time never runs ahead of
// wall time, so the timer first fires when the smaller of the two limits
// is reached and re-arms for what remains).
//
// Without a budget the CPU time is only reported, and reading the clock
// costs two system calls (~1 µs on the benchmark VM, a fifth of a small
// pooled call), so the guard reads it lazily: a call counts its busy time
// (wall time less the time the guest waited in host calls: sleep, KV) until
// the timer first fires, lazyCPUAfter into the call, and its thread's
// clock from then on. A short call thus reads no clock; its busy time is
// its CPU time unless the OS preempted its thread during the call (rare
// within a millisecond, and then overstated by the preemption).
//
// A guard comes in two forms. A one-shot guard (startGuard) derives a
// context that it cancels to stop the guest; it serves calls that create
// an instance, and modules compiled with wazero's own termination checks,
// which watch that context. A warm instance of an instrumented module
// keeps a reusable guard (newReusableGuard, begin) instead: it stops the
// guest only through its stop global, so it needs no context of its own,
// and its timer is made once. That saves most of the host's per-call
// allocations.
type guard struct {
	parent   context.Context
	ctx      context.Context // the context guest calls get
	cancel   context.CancelCauseFunc
	reusable bool
	start    time.Time
	deadline time.Time
	budget   time.Duration // CPU budget; 0 when the timeout bounds it
	tid      int
	// cpu0 is the thread's CPU clock at the start, or what it would have
	// read had the call so far been all busy time; meaningful once
	// sampled. Both are written under mu after arm.
	cpu0    time.Duration
	sampled bool
	// blocked is the time the guest waited in host calls (nanoseconds),
	// and waitStart when the wait under way began (nanoseconds since
	// start, plus one; 0 when none): the sleeper and the KV host functions
	// report them.
	blocked   atomic.Int64
	waitStart atomic.Int64

	// stopG is the guest's stop global when the module was instrumented
	// (see runtime/internal/wasmbin); nil when wazero's own termination
	// checks watch ctx.
	stopG      api.MutableGlobal
	unregister func() bool
	// closing is the engine's (calls.closing), for reusable guards: a
	// call that begins once Close has begun is stopped at once.
	closing *atomic.Bool

	mu    sync.Mutex // serializes the timer and stop callbacks with stop
	timer *time.Timer
	done  bool
	fired bool  // the stop global was set: the instance must not be reused
	cause error // reusable guards: why the guest was stopped
	gen   uint64
	wake  chan struct{} // reusable guards: closed when stopped, made on demand
	// hostCancel ends the context of the host call under way (a KV call),
	// for reusable guards, whose guest runs under its caller's context,
	// which stopping the guest does not end; see hostCall.
	hostCancel context.CancelFunc
}

// startGuard locks the calling goroutine to its thread and arms the limits.
// The caller must call stop on the same goroutine.
func startGuard(parent context.Context, timeout, budget time.Duration, sl *sleeper, stopG api.MutableGlobal) *guard {
	goruntime.LockOSThread()
	g := &guard{parent: parent, start: time.Now(), stopG: stopG}
	g.ctx, g.cancel = context.WithCancelCause(parent)
	sl.arm(g)
	if stopG != nil {
		g.attach(stopG)
	}
	g.arm(timeout, budget)
	g.mu.Lock() // check may run before AfterFunc returns
	g.timer = time.AfterFunc(g.firstCheck(timeout), g.check)
	g.mu.Unlock()
	return g
}

// newReusableGuard returns a guard for the calls of one warm instance of
// an instrumented module, stopped through stopG; calls that begin once
// closing is set are stopped at once. Use it through begin and stop, one
// call at a time.
func newReusableGuard(stopG api.MutableGlobal, closing *atomic.Bool) *guard {
	return &guard{reusable: true, stopG: stopG, closing: closing, done: true}
}

// begin is startGuard for a reusable guard.
func (g *guard) begin(parent context.Context, timeout, budget time.Duration, sl *sleeper) {
	goruntime.LockOSThread()
	// Under the lock: a timer callback of the previous call may still run.
	g.mu.Lock()
	g.parent, g.ctx = parent, parent
	g.start = time.Now()
	g.done, g.fired, g.cause, g.wake = false, false, nil, nil
	g.gen++
	g.arm(timeout, budget)
	if g.timer == nil {
		g.timer = time.AfterFunc(g.firstCheck(timeout), g.check)
	} else {
		g.timer.Reset(g.firstCheck(timeout))
	}
	if g.closing != nil && g.closing.Load() {
		// Engine.Close has begun and may have passed this guard by while
		// it was idle (haltRunning; both under g.mu).
		g.halt(errCauseClosed)
	}
	g.mu.Unlock()
	sl.arm(g)
	// The caller's context is watched from the first check on (watchCaller):
	// a call shorter than that is not worth stopping early, and registering
	// with the context costs as much as the rest of the guard.
}

// watchCaller makes a reusable guard stop the guest when the caller's
// context ends. g.mu is held.
func (g *guard) watchCaller() {
	if g.parent.Err() != nil {
		g.halt(errCauseCaller)
		return
	}
	gen := g.gen
	g.unregister = context.AfterFunc(g.parent, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if !g.done && g.gen == gen {
			g.halt(errCauseCaller)
		}
	})
}

// lazyCPUAfter is how far into a call without a CPU budget the guard
// starts reading its thread's CPU clock.
const lazyCPUAfter = time.Millisecond

// arm records the limits, the thread, and, with a CPU budget, the thread's
// CPU clock at the start.
func (g *guard) arm(timeout, budget time.Duration) {
	g.deadline = g.start.Add(timeout)
	g.tid = currentThread()
	g.blocked.Store(0)
	g.waitStart.Store(0)
	if budget > 0 && budget < timeout {
		g.budget, g.cpu0, g.sampled = budget, threadCPU(), true
	} else {
		g.budget, g.cpu0, g.sampled = 0, 0, false
	}
}

// firstCheck is when the timer first fires: at lazyCPUAfter (it reads the
// CPU clock and starts watching the caller's context), or earlier at the
// timeout or the CPU budget.
func (g *guard) firstCheck(timeout time.Duration) time.Duration {
	d := min(timeout, lazyCPUAfter)
	if g.budget > 0 {
		d = min(d, g.budget)
	}
	return d
}

// busy is the call's wall time until now less its waits in host calls,
// the one under way included.
func (g *guard) busy(now time.Time) time.Duration {
	wall := now.Sub(g.start)
	b := wall - time.Duration(g.blocked.Load())
	if ws := g.waitStart.Load(); ws != 0 {
		b -= wall - time.Duration(ws-1)
	}
	return max(0, b)
}

// wait records that the guest starts waiting in a host call; call the
// function it returns when the wait is over. Waits do not nest.
func (g *guard) wait() (done func()) {
	start := time.Now()
	g.waitStart.Store(int64(start.Sub(g.start)) + 1)
	return func() {
		g.blocked.Add(int64(time.Since(start)))
		g.waitStart.Store(0)
	}
}

// attach makes a one-shot guard stop an instrumented guest through its
// stop global when the invocation's context ends. Call it on the guard's
// goroutine, at most once.
func (g *guard) attach(stopG api.MutableGlobal) {
	g.mu.Lock()
	g.stopG = stopG // before fire can run
	g.mu.Unlock()
	unregister := context.AfterFunc(g.ctx, g.fire)
	g.mu.Lock()
	g.unregister = unregister // stop reads it under the lock
	g.mu.Unlock()
}

// fire stops an instrumented guest at its next loop iteration. It runs on
// its own goroutine once a one-shot guard's context ends.
func (g *guard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		g.stopG.Set(1)
		g.fired = true
	}
}

// haltRunning stops the guest for cause if a call is under way; Engine.Close
// uses it on guards it does not own.
func (g *guard) haltRunning(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		g.halt(cause)
	}
}

// hostCall ties the context of a host call (cancel ends it) to the guest:
// when the guard stops the guest, the host call ends too. It returns the
// function the host call must run when it returns, in place of cancel.
// A one-shot guard's guest runs under the guard's own context, which
// stopping it cancels, so there is nothing to do.
func (g *guard) hostCall(cancel context.CancelFunc) (done func()) {
	if !g.reusable {
		return cancel
	}
	g.mu.Lock()
	if g.fired {
		g.mu.Unlock()
		cancel()
		return cancel
	}
	g.hostCancel = cancel
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.hostCancel = nil
		g.mu.Unlock()
		cancel()
	}
}

// halt stops the guest for cause. g.mu is held.
func (g *guard) halt(cause error) {
	if g.hostCancel != nil {
		g.hostCancel()
	}
	if !g.reusable {
		g.cancel(cause) // fire, or wazero's checks, do the rest
		return
	}
	if g.fired {
		return
	}
	g.cause, g.fired = cause, true
	g.stopG.Set(1)
	if g.wake != nil {
		close(g.wake)
	}
}

// sleepDone returns a channel that is closed when the guest is stopped,
// for the sleeper.
func (g *guard) sleepDone() <-chan struct{} {
	if !g.reusable {
		return g.ctx.Done()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wake == nil {
		g.wake = make(chan struct{})
		if g.fired {
			close(g.wake)
		}
	}
	return g.wake
}

// check runs on the timer's goroutine. On a reusable guard it may run late,
// in the next call; it then checks that call's limits, which is harmless.
func (g *guard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return
	}
	now := time.Now()
	left := g.deadline.Sub(now)
	if left <= 0 {
		g.halt(errCauseTimeout)
		return
	}
	if g.reusable && g.unregister == nil && g.parent.Done() != nil {
		g.watchCaller()
		if g.fired {
			return
		}
	}
	if !g.sampled {
		// A call without a budget outlived lazyCPUAfter: read its
		// thread's clock from now on, its busy time standing for what
		// came before.
		if c, ok := threadCPUOf(g.tid); ok {
			g.cpu0, g.sampled = c-g.busy(now), true
		}
	}
	if g.budget > 0 {
		used, ok := threadCPUOf(g.tid)
		if ok {
			cpuLeft := g.budget - (used - g.cpu0)
			if cpuLeft <= 0 {
				g.halt(errCauseCPU)
				return
			}
			left = min(left, cpuLeft)
		}
	}
	g.timer.Reset(left)
}

// stop disarms the limits and unlocks the thread. It returns the CPU time
// used and, when the invocation was stopped from outside, why: ErrTimeout,
// ErrCPUBudget, ErrEngineClosed (Engine.Close) or ErrCanceled (the
// caller's context ended). When it returns a reason the call fails with
// it even if the guest call itself returned (guardedFor), and the instance,
// stopped or half-stopped, is discarded. A stop that lands after the guest
// returned but before stop takes g.mu counts too. It must run on the
// goroutine that called startGuard or begin.
func (g *guard) stop() (time.Duration, error) {
	g.mu.Lock()
	g.done = true
	g.timer.Stop()
	fired, cause := g.fired, g.cause
	sampled, cpu0 := g.sampled, g.cpu0
	unregister := g.unregister
	g.unregister = nil
	g.mu.Unlock()
	var used time.Duration
	if sampled {
		used = max(0, threadCPU()-cpu0)
	} else {
		used = g.busy(time.Now())
	}
	if unregister != nil {
		unregister()
	}
	goruntime.UnlockOSThread()
	if !g.reusable {
		if g.ctx.Err() != nil || fired {
			cause = context.Cause(g.ctx)
		}
		g.cancel(nil)
	} else if cause == nil && g.parent.Err() != nil {
		cause = errCauseCaller
	}
	switch {
	case cause == nil && !fired:
		return used, nil
	case cause == errCauseTimeout:
		return used, ErrTimeout
	case cause == errCauseCPU:
		return used, ErrCPUBudget
	case cause == errCauseClosed, errors.Is(cause, ErrEngineClosed):
		// Engine.Close halted the guard, or ended the context the call
		// runs under (calls.ctx, an idle call's).
		return used, ErrEngineClosed
	case errors.Is(g.parent.Err(), context.DeadlineExceeded):
		return used, ErrTimeout
	}
	return used, ErrCanceled
}
