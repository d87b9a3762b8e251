//go:build wasip1

package gojinn

import (
	"fmt"
	"unsafe"
)

// The pooled ABI, protocol v1. The host calls gojinn_v1_reserve(n) to get a
// buffer of at least n bytes in linear memory, writes the request's wire
// form there, then calls gojinn_v1_handle(n). The result packs the address
// of the response's wire form in the high 32 bits and its length in the low
// 32 bits. Both buffers stay valid until the next call.
var inBuf []byte

//go:wasmexport gojinn_v1_reserve
func reserve(n uint32) uint32 {
	if uint32(cap(inBuf)) < n || inBuf == nil {
		inBuf = make([]byte, max(n, 64<<10))
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf))))
}

//go:wasmexport gojinn_v1_handle
func handle(n uint32) uint64 {
	var out []byte
	if n > uint32(cap(inBuf)) {
		out = encodeError(fmt.Sprintf("request length %d exceeds the reserved %d bytes", n, cap(inBuf)))
	} else {
		out = handleWire(inBuf[:n])
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}
