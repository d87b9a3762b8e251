package runtime

import "golang.org/x/sys/cpu"

// cpuFeatures is wazero's internal/platform.CpuFeatures on arm64: the
// large system extensions' atomics.
func cpuFeatures() (flags uint64) {
	if cpu.ARM64.HasATOMICS {
		flags |= 1
	}
	return flags
}
