//go:build !race

package protocol

import (
	"net/http"
	"testing"
)

// The race detector changes allocation counts, so these tests skip -race.

func TestAppendWireDoesNotAllocate(t *testing.T) {
	req := benchRequest()
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendRequestWire(buf[:0], req) }); n != 0 {
		t.Errorf("AppendRequestWire: %v allocations, want 0", n)
	}
	resp := benchResponse()
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendResponseWire(buf[:0], resp) }); n != 0 {
		t.Errorf("AppendResponseWire: %v allocations, want 0", n)
	}
}

// TestDecodeWireAllocations guards the shared string and value-slice
// allocations of the wire decoders: a bounded number of allocations
// however many headers and fields a small message has.
func TestDecodeWireAllocations(t *testing.T) {
	req := AppendRequestWire(nil, benchRequest())
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeRequestWire(req) }); n > 8 {
		t.Errorf("DecodeRequestWire: %v allocations, want at most 8", n)
	}
	resp, _ := AppendResponseWire(nil, benchResponse())
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeResponseWire(resp) }); n > 12 {
		t.Errorf("DecodeResponseWire: %v allocations, want at most 12", n)
	}
	// The host's decoder of pooled responses: the response with room for
	// four fields, the header bytes and the body.
	small, _ := AppendResponseWire(nil, &Response{Status: 200, Body: []byte("hello"),
		Headers: http.Header{"Content-Type": {"text/plain"}, "X-A": {"1", "2"}}})
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeResponseWireFields(small) }); n != 3 {
		t.Errorf("DecodeResponseWireFields: %v allocations, want 3", n)
	}
}

// TestFieldsWireAllocations guards the raw handlers' path: no allocation
// to index a request when the index has room for its headers, none to
// encode a response.
func TestFieldsWireAllocations(t *testing.T) {
	req := AppendRequestWire(nil, benchRequest())
	x := RequestIndex{Headers: make([]HeaderSpan, 0, 16)}
	if n := testing.AllocsPerRun(100, func() { _ = IndexRequestWire(&x, req) }); n != 0 {
		t.Errorf("IndexRequestWire: %v allocations, want 0", n)
	}
	out := make([]byte, 0, 4096)
	fields := []HeaderField{{"Content-Type", "text/plain"}, {"Cache-Control", "no-store"}}
	if n := testing.AllocsPerRun(100, func() { out, _ = AppendResponseWireFields(out[:0], 200, fields, []byte("hello")) }); n != 0 {
		t.Errorf("AppendResponseWireFields: %v allocations, want 0", n)
	}
}
