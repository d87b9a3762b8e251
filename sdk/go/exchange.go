package gojinn

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The reactor's request path, kept free of wasm specifics so it can be
// tested on the host. Allocation is what a Go guest pays most for (about
// 0.5 µs per object under wazero), so one request costs, beyond what the
// handler allocates: the exchange, one string for all the request's
// strings and the request header map. The response writer, its header map
// and body, and the encoded response are reused from request to request;
// in pooled mode with reset they are part of the snapshot, so a request
// after a reset allocates no more than one before it.

// maxKeep bounds the body and output storage kept for the next request, so
// one large response does not pin its buffers for the instance's life.
const maxKeep = 1 << 20

var (
	wireWriter = &responseWriter{header: make(http.Header, 8)}
	outBuf     []byte
)

func init() {
	// Sized for a typical small response, so it is in the post-init
	// snapshot rather than allocated by every request after a reset.
	wireWriter.body.Grow(4 << 10)
	outBuf = make([]byte, 0, 8<<10)
	warmAllocator()
	warmFmt()
}

// warmSink keeps warmAllocator's objects from being optimised away.
var warmSink [2]any

// warmSizes are the Go runtime's small-object size classes up to 4 KiB
// (internal/runtime/gc.SizeClassToSize in Go 1.26; a size that is not a
// class boundary in another Go version still lands in some class). Larger
// classes are left out: their spans grew the linear memory a copy reset
// copies by ~25% for little gain.
var warmSizes = [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
	256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536,
	1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096}

// warmAllocator allocates one object of every small size class, with and
// without pointers, so that the allocator's per-P cache holds a span with
// free slots for each. In pooled mode with reset, every request starts
// from the post-init snapshot: without this it would refill the cache from
// the central lists for every size class it uses, every time (about as
// much work as the rest of a small request; the exchange alone, 840
// bytes, cost ~3 µs per request after a reset before its class was
// warmed).
func warmAllocator() {
	for _, size := range warmSizes {
		warmSink[0] = make([]byte, size)
		warmSink[1] = make([]*byte, size/8)
	}
	warmSink = [2]any{}
}

// warmFmt formats once, so that fmt's cache of printers holds one in the
// post-init snapshot. Without it, a handler that formats with fmt would,
// after every reset, allocate a printer and the cache's per-P storage
// again (about 3 µs of a pooled hello request after a reset,
// docs/benchmarks.md).
func warmFmt() {
	fmt.Fprintf(io.Discard, "%s %d %v", "", 0, nil)
}

// handleWire serves the request whose wire form is in in and returns the
// response's wire form. The result is valid until the next call.
func handleWire(in []byte) []byte {
	if cap(outBuf) > maxKeep {
		outBuf = make([]byte, 0, 8<<10)
	}
	if rawHandler != nil {
		return handleRawWire(in)
	}
	ex := new(exchange)
	if err := protocol.DecodeRequestWireInto(&ex.req, in, ex.vals[:]); err != nil {
		return encodeError("decode request: " + err.Error())
	}
	w := wireWriter
	w.reset()
	serveHTTP(w, ex)
	resp := w.finish()
	var err error
	outBuf, err = protocol.AppendResponseWire(outBuf[:0], &resp)
	if w.body.Cap() > maxKeep {
		w.body = bytes.Buffer{}
	}
	if err != nil {
		return encodeError("encode response: " + err.Error())
	}
	return outBuf
}

// encodeError answers 500 with msg, which also goes to stderr.
func encodeError(msg string) []byte {
	fmt.Fprintln(os.Stderr, "gojinn:", msg)
	resp := protocol.Response{Status: http.StatusInternalServerError, Body: []byte("gojinn guest: " + msg + "\n")}
	outBuf, _ = protocol.AppendResponseWire(outBuf[:0], &resp)
	return outBuf
}
