package runtime

import (
	"context"
	"sync/atomic"
	"time"
)

// pool holds warm instances of one pooled function. Its capacity bounds the
// function's concurrency: slots holds one token per live instance, idle
// holds the instances not in use. Both channels have the pool's capacity,
// so release never blocks.
type pool struct {
	fn     *Function
	mod    *module
	idle   chan *instance
	slots  chan struct{}
	closed atomic.Bool
}

func newPool(f *Function, m *module, size int) *pool {
	return &pool{fn: f, mod: m, idle: make(chan *instance, size), slots: make(chan struct{}, size)}
}

// acquire returns an idle instance, or creates one while the pool has room,
// or waits up to wait for either.
func (p *pool) acquire(ctx context.Context, wait time.Duration) (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	select {
	case p.slots <- struct{}{}:
		return p.create(ctx)
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case in := <-p.idle:
		return in, nil
	case p.slots <- struct{}{}:
		return p.create(ctx)
	case <-t.C:
		return nil, p.fn.errorf(ErrBusy, nil, "all %d instances stayed busy for %v; retry later or raise max_instances", cap(p.slots), wait)
	case <-ctx.Done():
		return nil, p.fn.errorf(ErrCanceled, context.Cause(ctx), "while waiting for an instance")
	}
}

// create instantiates a new instance in a slot already taken.
func (p *pool) create(ctx context.Context) (*instance, error) {
	in, err := p.fn.newInstance(ctx, p.mod, true)
	if err != nil {
		<-p.slots
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
	p.idle <- in
	if p.closed.Load() { // close raced with us: drain what we just added
		p.shrink()
	}
}

func (p *pool) discard(in *instance) {
	in.close()
	<-p.slots
}

// shrink closes every idle instance and returns how many it closed.
func (p *pool) shrink() int {
	n := 0
	for {
		select {
		case in := <-p.idle:
			p.discard(in)
			n++
		default:
			return n
		}
	}
}

// live is the number of instances, idle or busy.
func (p *pool) live() int { return len(p.slots) }

// close stops the pool from keeping instances; busy ones are closed when
// released.
func (p *pool) close() {
	p.closed.Store(true)
	p.shrink()
}
