package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pool holds warm instances of one pooled function. Its capacity bounds the
// function's concurrency: slots holds one token per live instance. Idle
// instances wait on a stack: the one released last is used first, so a
// function under load keeps using the few instances whose memory is still
// in the CPU's caches while the others stay idle (and are the ones sweep
// closes first). Callers that find no idle instance and no room wait on
// ready; release hands them instances (and discard the slots of broken
// ones) through it. ready's capacity is the pool's, so neither blocks.
type pool struct {
	fn     *Function
	mod    *module
	slots  chan struct{}
	closed atomic.Bool

	mu   sync.Mutex
	idle []*instance // a stack: the top is the most recently released
	// waiters counts callers waiting on ready that have not been handed
	// anything yet.
	waiters int
	// ready carries instances to waiting callers, or nil: the slot of a
	// discarded instance, in which the receiver creates a new one.
	ready chan *instance
}

func newPool(f *Function, m *module, size int) *pool {
	return &pool{fn: f, mod: m, slots: make(chan struct{}, size), idle: make([]*instance, 0, size), ready: make(chan *instance, size)}
}

// acquire returns an idle instance, or creates one while the pool has room,
// or waits up to wait for either.
func (p *pool) acquire(ctx context.Context, wait time.Duration) (*instance, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return in, nil
	}
	select {
	case p.slots <- struct{}{}:
		p.mu.Unlock()
		return p.create(ctx)
	default:
	}
	p.waiters++
	p.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	var cause error
	closed := false
	select {
	case in := <-p.ready:
		return p.handed(ctx, in)
	case <-t.C:
	case <-ctx.Done():
		cause = context.Cause(ctx)
	case <-p.fn.engine.calls.ctx.Done():
		closed = true
	}
	// Given up: unless release handed over something meanwhile, which is
	// then this caller's, stop counting as a waiter.
	p.mu.Lock()
	select {
	case in := <-p.ready:
		p.mu.Unlock()
		return p.handed(ctx, in)
	default:
	}
	p.waiters--
	p.mu.Unlock()
	if closed {
		return nil, p.fn.closedError(nil, "while waiting for an instance")
	}
	if cause != nil {
		return nil, p.fn.errorf(ErrCanceled, cause, "while waiting for an instance")
	}
	return nil, p.fn.errorf(ErrBusy, nil, "all %d instances stayed busy for %v; retry later or raise max_instances", cap(p.slots), wait)
}

// handed returns what a waiting caller was handed: an instance, or a new
// one created in the slot it got (nil).
func (p *pool) handed(ctx context.Context, in *instance) (*instance, error) {
	if in != nil {
		return in, nil
	}
	return p.create(ctx)
}

// create instantiates a new instance in a slot already taken. An
// instance whose creation Engine.Close stops fails with ErrEngineClosed
// (newInstance).
func (p *pool) create(ctx context.Context) (*instance, error) {
	if p.fn.engine.calls.closing.Load() {
		p.freeSlot()
		return nil, p.fn.closedError(nil, "before an instance was created")
	}
	in, err := p.fn.newInstance(ctx, p.mod, true)
	if err != nil {
		p.freeSlot()
		return nil, err
	}
	return in, nil
}

// release returns a healthy instance to the pool, or closes a broken one.
func (p *pool) release(in *instance, broken bool) {
	if broken || p.closed.Load() {
		p.discard(in)
		return
	}
	p.mu.Lock()
	if p.waiters > 0 {
		p.waiters--
		p.ready <- in
	} else {
		p.idle = append(p.idle, in)
	}
	p.mu.Unlock()
	if p.closed.Load() { // close raced with us: drain what we just added
		p.shrink()
	}
}

func (p *pool) discard(in *instance) {
	if g := in.sb.guard; g != nil {
		p.fn.engine.calls.forget(g) // watched since its first call (guardedFor)
	}
	in.close()
	p.freeSlot()
}

// freeSlot gives up a live instance's slot: to a waiting caller, which
// creates an instance in it, or back to the pool.
func (p *pool) freeSlot() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters > 0 {
		p.waiters--
		p.ready <- nil
		return
	}
	<-p.slots
}

// shrink closes every idle instance and returns how many it closed.
func (p *pool) shrink() int {
	p.mu.Lock()
	idle := p.idle
	p.idle = make([]*instance, 0, cap(p.slots))
	p.mu.Unlock()
	for _, in := range idle {
		p.discard(in)
	}
	return len(idle)
}

// live is the number of instances, idle or busy.
func (p *pool) live() int { return len(p.slots) }

// idleCount is the number of idle instances.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// close stops the pool from keeping instances; busy ones are closed when
// released.
func (p *pool) close() {
	p.closed.Store(true)
	p.shrink()
}
