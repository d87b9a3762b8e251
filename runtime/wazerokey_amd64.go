package runtime

import "golang.org/x/sys/cpu"

// cpuFeatures is wazero's internal/platform.CpuFeatures on amd64: SSE4.1,
// BMI1 and ABM (BMI1, BMI2 and POPCNT), the extensions its compiler emits.
func cpuFeatures() (flags uint64) {
	if cpu.X86.HasSSE41 {
		flags |= 1
	}
	if cpu.X86.HasBMI1 {
		flags |= 2
	}
	if cpu.X86.HasBMI1 && cpu.X86.HasBMI2 && cpu.X86.HasPOPCNT {
		flags |= 4
	}
	return flags
}
