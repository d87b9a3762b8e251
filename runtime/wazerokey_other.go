//go:build !(amd64 || arm64)

package runtime

// cpuFeatures: wazero tracks no CPU features on other architectures.
func cpuFeatures() uint64 { return 0 }
