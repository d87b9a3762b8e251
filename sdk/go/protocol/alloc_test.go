//go:build !race

package protocol

import "testing"

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
}
