//go:build !race

package gojinn

import (
	"net/http"
	"testing"
)

// The race detector changes allocation counts, so this test skips -race.

// TestRawPathAllocations guards what HandleRaw is for: a request served by
// a handler that allocates nothing costs one allocation (the string behind
// the request's fields), where the net/http path makes several.
func TestRawPathAllocations(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	in := benchWire()
	HandleRaw(rawHello)
	handleWire(in) // grow the reused buffers
	if n := testing.AllocsPerRun(100, func() { handleWire(in) }); n != 1 {
		t.Errorf("raw hello: %v allocations per request, want 1", n)
	}
	HandleFunc(helloHandler)
	handleWire(in)
	if n := testing.AllocsPerRun(100, func() { handleWire(in) }); n <= 1 {
		t.Errorf("net/http hello: %v allocations per request; the raw path's test above assumes more", n)
	}
}
