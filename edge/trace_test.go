package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// seenInvoker records what the handler passed to Invoke.
type seenInvoker struct {
	span        trace.SpanContext // of the ctx passed to Invoke
	traceParent string
	err         error
}

func (s *seenInvoker) Invoke(ctx context.Context, _ string, req *protocol.Request) (*runtime.Result, error) {
	s.span, s.traceParent = trace.SpanContextFromContext(ctx), req.TraceParent
	if s.err != nil {
		return nil, s.err
	}
	return &runtime.Result{Response: &protocol.Response{Status: 201, Body: []byte("ok")}}, nil
}

const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func serveOnce(t *testing.T, h *edge.Handler, method, target string) int {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("Traceparent", incoming)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// With a tracer, a request makes a server span continuing the incoming
// trace and an invocation span under it; Invoke gets the invocation span
// in its context (for the runtime's own spans) and the guest its
// traceparent. A failed invocation ends with the outcome, not the error's
// text.
func TestHandlerSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	inv := &seenInvoker{}
	h := &edge.Handler{Invoker: inv, Function: "f", Tracer: edge.NewTracer(tp), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if code := serveOnce(t, h, "POST", "http://example.com:8080/p?secret=1"); code != 201 {
		t.Fatalf("status %d", code)
	}
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2", len(ended))
	}
	invoke, server := ended[0], ended[1]
	if server.Name() != "HTTP POST" || server.SpanKind() != trace.SpanKindServer ||
		server.Parent().SpanID().String() != "00f067aa0ba902b7" || !server.Parent().IsRemote() {
		t.Errorf("server span %q kind %v parent %v", server.Name(), server.SpanKind(), server.Parent())
	}
	want := map[attribute.Key]attribute.Value{
		"http.request.method": attribute.StringValue("POST"), "url.scheme": attribute.StringValue("http"),
		"network.protocol.version": attribute.StringValue("1.1"), "server.address": attribute.StringValue("example.com"),
		"http.response.status_code": attribute.IntValue(201),
	}
	checkAttrs(t, "server", server.Attributes(), want)
	if invoke.Name() != "invoke f" || invoke.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("invocation span %q parent %v, want child of %v", invoke.Name(), invoke.Parent().SpanID(), server.SpanContext().SpanID())
	}
	checkAttrs(t, "invocation", invoke.Attributes(), map[attribute.Key]attribute.Value{
		edge.AttrFunction: attribute.StringValue("f"), edge.AttrOutcome: attribute.StringValue(edge.OutcomeOK),
	})
	if inv.span.SpanID() != invoke.SpanContext().SpanID() {
		t.Errorf("Invoke's ctx holds span %v, want the invocation span %v", inv.span.SpanID(), invoke.SpanContext().SpanID())
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + invoke.SpanContext().SpanID().String() + "-01"; inv.traceParent != want {
		t.Errorf("guest traceparent %q, want %q", inv.traceParent, want)
	}

	inv.err = runtime.ErrTimeout
	if code := serveOnce(t, h, "BREW", "/"); code != http.StatusGatewayTimeout {
		t.Fatalf("timeout: status %d", code)
	}
	ended = rec.Ended()[2:]
	invoke, server = ended[0], ended[1]
	if invoke.Status().Code != codes.Error || invoke.Status().Description != edge.OutcomeTimeout {
		t.Errorf("failed invocation status %+v, want Error %q", invoke.Status(), edge.OutcomeTimeout)
	}
	checkAttrs(t, "failed invocation", invoke.Attributes(), map[attribute.Key]attribute.Value{edge.AttrOutcome: attribute.StringValue(edge.OutcomeTimeout)})
	if server.Name() != "HTTP" || server.Status().Code != codes.Error {
		t.Errorf("unknown method, 504: server span %q status %+v, want HTTP and Error", server.Name(), server.Status())
	}
	checkAttrs(t, "server", server.Attributes(), map[attribute.Key]attribute.Value{"http.request.method": attribute.StringValue("_OTHER")})
}

// Without a tracer the handler makes no span and the guest gets the
// caller's traceparent as it came.
func TestHandlerNoTracer(t *testing.T) {
	inv := &seenInvoker{}
	h := &edge.Handler{Invoker: inv, Function: "f"}
	if code := serveOnce(t, h, "GET", "/"); code != 201 {
		t.Fatalf("status %d", code)
	}
	if inv.span.IsValid() || inv.traceParent != incoming {
		t.Errorf("Invoke got span %v traceparent %q, want none and %q", inv.span, inv.traceParent, incoming)
	}
}

func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[attribute.Key]attribute.Value) {
	t.Helper()
	have := map[attribute.Key]attribute.Value{}
	for _, kv := range got {
		have[kv.Key] = kv.Value
		if v := kv.Value.String(); strings.Contains(v, "secret") || strings.Contains(v, "/p") {
			t.Errorf("%s span attribute %s = %q records the URL", what, kv.Key, v)
		}
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("%s span %s = %v, want %v", what, k, have[k].String(), v.String())
		}
	}
}

// BenchmarkHandlerTracing is the cost of tracing per request, the
// invocation faked: off (no tracer, the default) and on (spans batched to
// an exporter that drops them).
func BenchmarkHandlerTracing(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for name, tracer := range map[string]*edge.Tracer{"off": nil, "on": edge.NewTracer(tp)} {
		b.Run(name, func(b *testing.B) {
			h := &edge.Handler{Invoker: &seenInvoker{}, Function: "f", Tracer: tracer}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Traceparent", incoming)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
		})
	}
}
