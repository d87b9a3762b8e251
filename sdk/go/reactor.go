//go:build wasip1

package gojinn

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
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
	if !heapReserved {
		heapReserved = true
		reserveHeap(os.Getenv("GOJINN_HEAP_RESERVE"))
	}
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

// heapReserved is set by the first reserve call, which the host makes
// after _initialize and, for an instance it will reset, before taking its
// snapshot.
var heapReserved bool

// heapSink keeps reserveHeap's allocation from being optimised away.
var heapSink []byte

// reserveHeap grows the Go heap by size bytes (GOJINN_HEAP_RESERVE, set
// by the host for instances it resets, after a request outgrew an earlier
// instance's snapshot) and frees them again, so that the snapshot holds
// that much free heap. WebAssembly memory cannot shrink and the Go runtime
// keeps freed pages, so later requests allocate from them instead of
// growing memory past the snapshot, which makes the host retire the
// instance. The pages come fresh from memory.grow and are not written, so
// a copy-on-write snapshot stays as small as before. An invalid value is
// ignored.
func reserveHeap(size string) {
	n, err := strconv.ParseUint(size, 10, 32)
	if err != nil || n == 0 {
		return
	}
	heapSink = make([]byte, n)
	heapSink = nil
	runtime.GC() // frees the pages back to the heap, swept
}

// gcSamples are the heap figures idle reads: the bytes of objects not yet
// freed, what the last collection kept, and the heap goal at which Go's
// collector starts the next cycle on its own.
var gcSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/heap/goal:bytes"},
}

// idleGC is false when the function's env sets GOGC: the collector then
// runs as the user asked.
var (
	idleGC    = os.Getenv("GOGC") == ""
	idlePaced idlePacer
)

// idle is called by the host between requests (every 64 requests of a
// pooled instance it does not reset), off the request path. It collects
// garbage when the heap is due for it (idlePacer): Go's own collector
// would start a concurrent cycle inside a request, and in a reactor that
// cycle's marking drags over many requests and costs several times a
// collection done here at once (docs/benchmarks.md).
//
//go:wasmexport gojinn_v1_idle
func idle() {
	if !idleGC {
		return
	}
	metrics.Read(gcSamples)
	for _, s := range gcSamples {
		if s.Value.Kind() != metrics.KindUint64 {
			idleGC = false // a Go without these metrics: leave it to the collector
			return
		}
	}
	if idlePaced.due(gcSamples[0].Value.Uint64(), gcSamples[1].Value.Uint64(), gcSamples[2].Value.Uint64()) {
		runtime.GC()
		idlePaced.last = 0
	}
}
