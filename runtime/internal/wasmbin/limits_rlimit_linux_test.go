//go:build linux

package wasmbin

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// limitAddressSpace limits the process's address space (RLIMIT_AS) to its
// current size plus extra bytes, so that a huge allocation fails at once
// with a fatal out of memory error instead of depending on the system's
// overcommit policy. The current size is added because the race detector
// reserves terabytes of shadow memory up front.
func limitAddressSpace(extra uint64) error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return err
	}
	defer f.Close()
	var size uint64
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return fmt.Errorf("VmSize %q: %w", v, err)
			}
			size = kb << 10
		}
	}
	if size == 0 {
		return fmt.Errorf("no VmSize in /proc/self/status")
	}
	lim := &syscall.Rlimit{Cur: size + extra, Max: size + extra}
	return syscall.Setrlimit(syscall.RLIMIT_AS, lim)
}
