package edge_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// discardWriter is a ResponseWriter that keeps one header map and drops
// the body, so the benchmark measures the handler, not a server.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkHandler measures the node's request path without a network:
// routing, request conversion, the runtime's pooled call of the Go guest,
// response conversion, metrics. The request is what an HTTP/3 client
// sends for GET / (no Content-Length: the body is read to its end).
// guest-ns/op is the guest's share (Result.CPUTime); the rest is the host.
// Run: go test -run '^$' -bench Handler -benchmem ./edge/
func BenchmarkHandler(b *testing.B) {
	for _, example := range []string{"hello-raw", "hello"} {
		b.Run(example, func(b *testing.B) {
			e := enginetest.Engine(b)
			if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "hello", Version: "v1",
				Module: runtimetest.BuildGo(b, "examples/"+example, true), Mode: runtime.ModePooled}); err != nil {
				b.Fatal(err)
			}
			router := routerFor(b, edge.Route{Path: "/*", Function: "hello"})
			metrics, err := edge.NewMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			h := &edge.Handler{Invoker: guestTimer{e, new(int64)}, Router: router, Metrics: metrics,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			r, err := http.NewRequest(http.MethodGet, "https://localhost/", http.NoBody)
			if err != nil {
				b.Fatal(err)
			}
			r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/3.0", 3, 0
			r.ContentLength = -1
			r.RemoteAddr = "127.0.0.1:50000"
			r.RequestURI = "/"
			r.TLS = &tls.ConnectionState{}
			r.Header = http.Header{"User-Agent": {"Go-http-client/3"}, "Accept-Encoding": {"gzip"}}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Body = http.NoBody
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.ReportMetric(float64(*h.Invoker.(guestTimer).ns)/float64(b.N), "guest-ns/op")
		})
	}
}

// guestTimer adds up the guests' CPU time.
type guestTimer struct {
	*runtime.Engine
	ns *int64
}

func (g guestTimer) Invoke(ctx context.Context, fn string, req *protocol.Request) (*runtime.Result, error) {
	res, err := g.Engine.Invoke(ctx, fn, req)
	if res != nil {
		*g.ns += int64(res.CPUTime)
	}
	return res, err
}
