package runtime

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// closeWait bounds how long Engine.Close waits for the guests it stopped to
// return, on top of its ctx. A stopped guest returns at its next loop
// check, and its host calls (sleep, KV) are interrupted, so they all return
// within milliseconds; the bound is for a host bug, or a store that ignores
// its context, and keeps shutdown bounded either way.
const closeWait = 5 * time.Second

// calls tracks everything that runs guest code (invocations and idle
// calls) or wazero's compiler (Load and Check) so that Engine.Close can
// refuse new ones, stop the running ones through their guards, and wait
// for them before it closes the wazero runtimes: closing a runtime frees
// the linear memory of every instance in it, and a guest still running in
// unmapped or recycled memory crashes the process; closing the cache
// clears the compiler's tables, and a compile that then finishes panics on
// them (a nil map), which takes the process down too. Compiles stop at
// their next step once ctx ends (moduleCache.stopped).
//
// The guards it stops are the one-shot guard of every call that creates an
// instance or runs a module compiled with wazero's own checks (watched for
// the call), and the reusable guard of every warm pooled instance (watched
// from its first call until the instance is discarded, so that a warm call
// pays for no registration; begin checks closing instead).
type calls struct {
	closing atomic.Bool
	n       atomic.Int64  // invocations, idle calls, loads and checks under way
	drained chan struct{} // closed once closing and n is 0
	once    sync.Once
	// ctx ends when Close begins (cause ErrEngineClosed): idle calls run
	// under it, and compiles watch it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	guards map[*guard]struct{}
}

func newCalls() *calls {
	c := &calls{drained: make(chan struct{}), guards: map[*guard]struct{}{}}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	return c
}

// enter registers a call about to run guest code; it returns false once
// Close has begun. A call that entered must exit.
func (c *calls) enter() bool {
	c.n.Add(1)
	if c.closing.Load() { // after the Add: Close either sees the call or the call sees Close
		c.exit()
		return false
	}
	return true
}

// exit ends a call registered by enter.
func (c *calls) exit() {
	if c.n.Add(-1) == 0 && c.closing.Load() {
		c.once.Do(func() { close(c.drained) })
	}
}

// watch makes Close stop g. Once Close has begun, g is stopped at once.
func (c *calls) watch(g *guard) {
	c.mu.Lock()
	if !c.closing.Load() {
		c.guards[g] = struct{}{}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	g.haltRunning(errCauseClosed)
}

// forget undoes watch.
func (c *calls) forget(g *guard) {
	c.mu.Lock()
	delete(c.guards, g)
	c.mu.Unlock()
}

// stop refuses new calls and stops the running ones: every watched guard
// that is armed stops its guest (as a timeout does), and sleeps and KV
// calls under way are woken. Callers waiting for a pooled instance give up.
func (c *calls) stop() {
	c.closing.Store(true)
	c.mu.Lock()
	gs := make([]*guard, 0, len(c.guards))
	for g := range c.guards {
		gs = append(gs, g)
	}
	c.mu.Unlock()
	for _, g := range gs {
		g.haltRunning(errCauseClosed)
	}
	// After the guards, so that an idle call's guard, which also watches
	// ctx, records why it was stopped.
	c.cancel(ErrEngineClosed)
	if c.n.Load() == 0 {
		c.once.Do(func() { close(c.drained) })
	}
}

// wait waits, after stop, until every call has returned, for at most
// closeWait or until ctx ends.
func (c *calls) wait(ctx context.Context) error {
	select {
	case <-c.drained: // first: an ended ctx does not matter then
		return nil
	default:
	}
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-c.drained:
		return nil
	case <-t.C:
		return fmt.Errorf("%d calls still running %v after they were stopped", c.n.Load(), closeWait)
	case <-ctx.Done():
		return fmt.Errorf("%d calls still running when the context ended: %w", c.n.Load(), context.Cause(ctx))
	}
}
