//go:build !linux

package wasmbin

import "errors"

// limitAddressSpace is only implemented on Linux.
func limitAddressSpace(extra uint64) error {
	return errors.New("RLIMIT_AS is only set on Linux")
}
