//go:build !linux

package runtime

import "time"

// On systems without per-thread CPU clocks the CPU budget is not enforced
// separately; the wall-clock timeout still bounds it.

func threadCPU() time.Duration { return 0 }

func currentThread() int { return 0 }

func threadCPUOf(int) (time.Duration, bool) { return 0, false }
