//go:build linux

package runtime

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time consumed by the calling OS thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// currentThread identifies the calling OS thread for threadCPUOf.
func currentThread() int { return unix.Gettid() }

// threadCPUOf returns the CPU time consumed by thread tid of this process,
// through the per-thread CPU clock Linux derives from a thread id
// (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
func threadCPUOf(tid int) (time.Duration, bool) {
	clock := int32((^tid)<<3 | 6)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
