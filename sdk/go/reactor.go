//go:build wasip1

package gojinn

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The pooled ABI, protocol v1. The host calls gojinn_v1_reserve(n) to get a
// buffer of at least n bytes in linear memory, writes the request's wire
// form there, then calls gojinn_v1_handle(n). The result packs the address
// of the response's wire form in the high 32 bits and its length in the low
// 32 bits. Both buffers stay valid until the next call.
var (
	inBuf  []byte
	outBuf []byte
)

//go:wasmexport gojinn_v1_reserve
func reserve(n uint32) uint32 {
	if uint32(cap(inBuf)) < n || inBuf == nil {
		inBuf = make([]byte, max(n, 64<<10))
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf))))
}

//go:wasmexport gojinn_v1_handle
func handle(n uint32) uint64 {
	if n > uint32(cap(inBuf)) {
		return writeOut(errorResponse(fmt.Sprintf("request length %d exceeds the reserved %d bytes", n, cap(inBuf))))
	}
	req, err := protocol.DecodeRequestWire(inBuf[:n])
	if err != nil {
		return writeOut(errorResponse("decode request: " + err.Error()))
	}
	return writeOut(serve(req))
}

func writeOut(resp *protocol.Response) uint64 {
	var err error
	outBuf, err = protocol.AppendResponseWire(outBuf[:0], resp)
	if err != nil {
		outBuf, _ = protocol.AppendResponseWire(outBuf[:0], errorResponse("encode response: "+err.Error()))
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf))))<<32 | uint64(len(outBuf))
}

func errorResponse(msg string) *protocol.Response {
	fmt.Fprintln(os.Stderr, "gojinn:", msg)
	return &protocol.Response{Status: 500, Body: []byte("gojinn guest: " + msg + "\n")}
}
