package runtime

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// memBudget bounds the linear memory of all the instances of an engine
// together (Config.MaxGuestMemory). Each function's memory limit bounds
// one instance, and max_instances its instances, but nothing else bounded
// the sum over functions: enough functions, each within its limits, could
// take more memory than the machine has, and the kernel's OOM killer then
// ends the whole node. A grow (and the first allocation of an instance)
// is charged here first; one the budget refuses fails like a grow past
// the function's limit, and the call reports ErrNodeMemory. A nil budget
// charges nothing.
type memBudget struct {
	limit int64
	used  atomic.Int64
}

// take charges n bytes and reports whether they fit.
func (b *memBudget) take(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

// give returns n bytes taken earlier.
func (b *memBudget) give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// inUse is the linear memory charged now, in bytes.
func (b *memBudget) inUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// limitOrZero is the budget's limit, 0 for none.
func (b *memBudget) limitOrZero() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// newMemBudget returns the budget for Config.MaxGuestMemory: nil for a
// negative value (no cap), half the memory available to the process for
// 0 (nil if that cannot be read), the value itself otherwise.
func newMemBudget(max int64) *memBudget {
	switch {
	case max < 0:
		return nil
	case max == 0:
		avail := availableMemory()
		if avail <= 0 {
			return nil
		}
		return &memBudget{limit: avail / 2}
	}
	return &memBudget{limit: max}
}

// availableMemory is the memory the process may use: the machine's
// (MemTotal), or its cgroup's limit (memory.max, cgroup v2) when lower;
// 0 when neither can be read.
func availableMemory() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				f := strings.Fields(rest)
				if len(f) == 2 && f[1] == "kB" {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						total = kb << 10
					}
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if lim, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && lim > 0 && (total == 0 || lim < total) {
			total = lim
		}
	}
	return total
}
