package edge

import (
	"context"
	"net"
	"net/http"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the edge's spans.
const TracerName = "github.com/gojinn/gojinn/edge"

// Tracer makes the edge's OpenTelemetry spans: a server span per request,
// continuing the caller's W3C trace context, and a child span per
// invocation whose context reaches the guest as its traceparent and the
// runtime as the context passed to Invoke. The runtime starts its own
// spans (host calls) under it with trace.SpanFromContext(ctx).
//
// Spans carry the method, scheme, protocol version, host name, status,
// function, version, mode and outcome: never the path, query, headers,
// bodies or error text, which may carry secrets.
//
// A Handler with no Tracer does no span work at all.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TraceContext
}

// NewTracer returns a Tracer whose spans go to tp.
func NewTracer(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(TracerName)}
}

// Span attribute keys of the invocation span; the server span uses the
// OpenTelemetry HTTP semantic conventions.
const (
	AttrFunction        = attribute.Key("gojinn.function")
	AttrFunctionVersion = attribute.Key("gojinn.function.version")
	AttrMode            = attribute.Key("gojinn.mode")
	AttrOutcome         = attribute.Key("gojinn.outcome")
	AttrRequestID       = attribute.Key("gojinn.request_id")
)

// functionLookup is how the tracer learns a function's version and mode;
// *runtime.Engine satisfies it.
type functionLookup interface {
	Function(name string) (*runtime.Function, bool)
}

// knownMethod says whether m is one of the nine standard methods. Others
// are _OTHER, as the HTTP semantic conventions say, so a client cannot
// make span names and attributes unbounded.
func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// startServer continues the trace in r's traceparent and tracestate
// headers with a server span, returned with r carrying it.
func (t *Tracer) startServer(r *http.Request) (*http.Request, trace.Span) {
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	method, name := r.Method, "HTTP "+r.Method
	if !knownMethod(method) {
		method, name = "_OTHER", "HTTP"
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		span.SetAttributes(
			attribute.String("http.request.method", method),
			attribute.String("url.scheme", scheme),
			attribute.String("network.protocol.version", protoVersion(r)),
			attribute.String("server.address", host),
		)
	}
	return r.WithContext(ctx), span
}

// endServer ends a server span with the status sent.
func endServer(span trace.Span, code int) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			// 4xx are the client's errors, not the server's.
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// startInvoke starts the invocation span of function under ctx's span and
// hands its context to the guest as req.TraceParent.
func (t *Tracer) startInvoke(ctx context.Context, inv Invoker, function string, req *protocol.Request) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "invoke "+function, trace.WithSpanKind(trace.SpanKindInternal))
	req.TraceParent = traceParent(span.SpanContext())
	if span.IsRecording() {
		attrs := []attribute.KeyValue{AttrFunction.String(function), AttrRequestID.String(req.RequestID)}
		if fl, ok := inv.(functionLookup); ok {
			if f, ok := fl.Function(function); ok {
				attrs = append(attrs, AttrFunctionVersion.String(f.Version()), AttrMode.String(string(f.Mode())))
			}
		}
		// Pool wait and compile time are runtime internals, not recorded yet;
		// the runtime can record them as events or child spans of
		// trace.SpanFromContext(ctx).
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// endInvoke ends an invocation span with its outcome. The error's text
// stays out of the span: it can quote the guest's output.
func endInvoke(span trace.Span, err error) {
	if span.IsRecording() {
		outcome := Outcome(err)
		span.SetAttributes(AttrOutcome.String(outcome))
		if err != nil {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// traceParent formats sc as a W3C traceparent header value, or "" when sc
// is invalid.
func traceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// protoVersion is network.protocol.version: 1.0, 1.1, 2 or 3.
func protoVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 3:
		return "3"
	case 2:
		return "2"
	}
	if r.ProtoMinor == 0 {
		return "1.0"
	}
	return "1.1"
}
