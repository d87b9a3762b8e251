//go:build !linux

package linmem

import "fmt"

// CoWSupported reports whether KindCoW works on this system. It is always
// false off linux.
func CoWSupported() bool { return false }

func newCoWMemory(uint64) (Memory, error) {
	return nil, fmt.Errorf("linmem: kind %v: %w", KindCoW, ErrUnsupported)
}
