package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Causes recorded on an invocation's context when the host stops it.
var (
	errCauseTimeout = errors.New("wall-clock timeout")
	errCauseCPU     = errors.New("CPU-time budget exhausted")
)

// guard bounds one invocation in wall-clock time and CPU time with a
// single timer. The invocation runs on a locked OS thread so its CPU time
// can be read from that thread's CPU clock: at the start, at the end, and
// by the timer whenever the budget could have been spent (CPU time never
// runs ahead of wall time, so the timer first fires when the smaller of the
// two limits is reached and re-arms for what remains).
type guard struct {
	parent   context.Context
	ctx      context.Context
	cancel   context.CancelCauseFunc
	start    time.Time
	deadline time.Time
	budget   time.Duration // CPU budget; 0 when the timeout bounds it
	tid      int
	cpu0     time.Duration

	// stopG is the guest's stop global when the module was instrumented
	// (see runtime/internal/wasmbin); nil when wazero's own termination
	// checks watch ctx.
	stopG      api.MutableGlobal
	unregister func() bool

	mu    sync.Mutex // serializes the timer and stop callbacks with stop
	timer *time.Timer
	done  bool
	fired bool // the stop global was set: the instance must not be reused
}

// startGuard locks the calling goroutine to its thread and arms the limits.
// The caller must call stop on the same goroutine.
func startGuard(parent context.Context, timeout, budget time.Duration, sl *sleeper, stopG api.MutableGlobal) *guard {
	goruntime.LockOSThread()
	g := &guard{parent: parent, start: time.Now(), stopG: stopG}
	g.ctx, g.cancel = context.WithCancelCause(parent)
	sl.arm(g.ctx)
	if stopG != nil {
		g.attach(stopG)
	}
	g.deadline = g.start.Add(timeout)
	if budget > 0 && budget < timeout {
		g.budget = budget
		g.tid = currentThread()
	}
	g.cpu0 = threadCPU()
	g.mu.Lock() // check may run before AfterFunc returns
	g.timer = time.AfterFunc(min(timeout, g.budgetOrMax()), g.check)
	g.mu.Unlock()
	return g
}

func (g *guard) budgetOrMax() time.Duration {
	if g.budget == 0 {
		return time.Duration(1<<63 - 1)
	}
	return g.budget
}

// attach makes the guard stop an instrumented guest through its stop
// global when the invocation's context ends. Call it on the guard's
// goroutine, at most once.
func (g *guard) attach(stopG api.MutableGlobal) {
	g.mu.Lock()
	g.stopG = stopG
	g.mu.Unlock()
	g.unregister = context.AfterFunc(g.ctx, g.fire)
}

// fire stops an instrumented guest at its next loop iteration. It runs on
// its own goroutine once the invocation's context ends.
func (g *guard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		g.stopG.Set(1)
		g.fired = true
	}
}

// check runs on the timer's goroutine.
func (g *guard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return
	}
	now := time.Now()
	left := g.deadline.Sub(now)
	if left <= 0 {
		g.cancel(errCauseTimeout)
		return
	}
	if g.budget > 0 {
		used, ok := threadCPUOf(g.tid)
		if ok {
			cpuLeft := g.budget - (used - g.cpu0)
			if cpuLeft <= 0 {
				g.cancel(errCauseCPU)
				return
			}
			left = min(left, cpuLeft)
		}
	}
	g.timer.Reset(left)
}

// stop disarms the limits and unlocks the thread. It returns the CPU time
// used and, when the invocation was stopped from outside, why: ErrTimeout,
// ErrCPUBudget or ErrCanceled (the caller's context ended). When it returns
// a reason the instance may be stopped or half-stopped and must be
// discarded even if the guest call itself returned. It must run on the
// goroutine that called startGuard.
func (g *guard) stop() (time.Duration, error) {
	used := threadCPU() - g.cpu0
	g.mu.Lock()
	g.done = true
	g.timer.Stop()
	fired := g.fired
	g.mu.Unlock()
	if g.unregister != nil {
		g.unregister()
	}
	goruntime.UnlockOSThread()
	var kind error
	if g.ctx.Err() != nil || fired {
		switch context.Cause(g.ctx) {
		case errCauseTimeout:
			kind = ErrTimeout
		case errCauseCPU:
			kind = ErrCPUBudget
		default:
			kind = ErrCanceled
			if errors.Is(g.parent.Err(), context.DeadlineExceeded) {
				kind = ErrTimeout
			}
		}
	}
	g.cancel(nil)
	return used, kind
}
