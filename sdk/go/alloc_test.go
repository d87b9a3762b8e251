//go:build !race

package gojinn

import (
	"net/http"
	"testing"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The race detector changes allocation counts, so this test skips -race.

// TestRawPathAllocations guards what HandleRaw is for: a handler that
// allocates nothing costs one allocation per request when it reads a
// request field (the string behind the request's fields) and none when the
// fields it asks for are absent, where the net/http path makes several.
func TestRawPathAllocations(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	HandleRaw(rawHello)
	for _, c := range []struct {
		name string
		in   []byte
		want float64
	}{
		{"with a query", benchWire(), 1},
		{"without a query", protocol.AppendRequestWire(nil, &protocol.Request{Method: "GET", URI: "/", Path: "/",
			Headers: http.Header{"User-Agent": {"gojinn-test"}}}), 0},
	} {
		handleWire(c.in) // grow the reused buffers
		if n := testing.AllocsPerRun(100, func() { handleWire(c.in) }); n != c.want {
			t.Errorf("raw hello %s: %v allocations per request, want %v", c.name, n, c.want)
		}
	}
	in := benchWire()
	HandleFunc(helloHandler)
	handleWire(in)
	if n := testing.AllocsPerRun(100, func() { handleWire(in) }); n <= 1 {
		t.Errorf("net/http hello: %v allocations per request; the raw path's test above assumes more", n)
	}
}
