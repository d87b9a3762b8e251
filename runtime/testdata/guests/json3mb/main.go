// Command json3mb is a reactor of about 3 MB (Go runtime, fmt
// and encoding/json, no net/http) for the compile benchmarks: it
// answers every request with a constant response.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"unsafe"
)

var (
	inBuf  []byte
	outBuf []byte
)

func init() {
	// Pull in fmt, encoding/json so the module has the size of
	// a small real function; the work itself is trivial.
	b, _ := json.Marshal(map[string]any{"ok": true})
	outBuf = fmt.Appendf(nil, "GJS\x01\x01\x02\xc8\x01\x03%c%s", len(b), b)
	if len(outBuf) == 0 {
		fmt.Fprintln(os.Stderr, "empty")
	}
}

//go:wasmexport gojinn_v1_reserve
func reserve(n uint32) uint32 {
	if uint32(cap(inBuf)) < n || inBuf == nil {
		inBuf = make([]byte, max(n, 64<<10))
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf))))
}

//go:wasmexport gojinn_v1_handle
func handle(uint32) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf))))<<32 | uint64(len(outBuf))
}

func main() {}
