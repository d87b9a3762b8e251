package runtime

import (
	"context"
	"sync/atomic"
	"time"
)

// sleeper is the clock sleep (WASI poll_oneoff on a clock) of one
// instance. wazero's own sleep cannot be interrupted, so a guest sleeping
// for an hour would hold its invocation past the timeout; this one wakes
// as soon as the invocation's context ends, and wazero then stops the guest
// at its next check.
type sleeper struct {
	done atomic.Value // <-chan struct{} of the running invocation
}

// arm ties the sleeper to the invocation running under ctx.
func (s *sleeper) arm(ctx context.Context) { s.done.Store(ctx.Done()) }

// sleep implements sys.Nanosleep.
func (s *sleeper) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	done, _ := s.done.Load().(<-chan struct{})
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}
