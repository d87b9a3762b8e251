package gojinn

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

func helloHandler(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Hello, %s!\n", name)
}

func benchWire() []byte {
	return protocol.AppendRequestWire(nil, &protocol.Request{
		Method: "GET", URI: "/?name=bench", Path: "/", RawQuery: "name=bench",
		Headers: http.Header{"User-Agent": {"gojinn-test"}},
		Host:    "example.test", Scheme: "https", Proto: "HTTP/1.1",
		RemoteAddr: "192.0.2.1:1234", RequestID: "req-1", Function: "hello", FunctionVersion: "v1",
	})
}

// BenchmarkHandleWire measures the reactor's request path natively: the
// same code runs in the guest, several times slower.
func BenchmarkHandleWire(b *testing.B) {
	defer Handle(http.NotFoundHandler())
	in := benchWire()
	for _, c := range []struct {
		name string
		h    http.HandlerFunc
	}{{"empty", func(http.ResponseWriter, *http.Request) {}}, {"hello", helloHandler}} {
		b.Run(c.name, func(b *testing.B) {
			HandleFunc(c.h)
			b.ReportAllocs()
			for b.Loop() {
				handleWire(in)
			}
		})
	}
}
