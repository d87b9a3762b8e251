package runtime

import (
	"sync/atomic"
	"time"
)

// sleeper is the clock sleep (WASI poll_oneoff on a clock) of one
// instance. wazero's own sleep cannot be interrupted, so a guest sleeping
// for an hour would hold its invocation past the timeout; this one wakes
// as soon as the invocation's guard stops it, and the guest is then
// stopped at its next check. A woken guest sees its sleep end as if it
// had run its course and may answer before any check; the call fails with
// the stop's reason all the same (guardedFor), so such an answer, based on
// a sleep that was cut short, is never served.
type sleeper struct {
	g atomic.Pointer[guard] // guard of the running invocation
}

// arm ties the sleeper to the invocation running under g.
func (s *sleeper) arm(g *guard) { s.g.Store(g) }

// sleep implements sys.Nanosleep.
func (s *sleeper) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	var done <-chan struct{}
	if g := s.g.Load(); g != nil {
		done = g.sleepDone()
		defer g.wait()()
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}
