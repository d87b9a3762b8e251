package runtime

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the runtime's spans.
//
// The runtime makes no spans of its own accord: it continues the span in
// the context an invocation is given (the edge's invocation span), with
// the tracer provider that span came from. With no recording span in the
// context (no exporter configured) it does no span work.
const TracerName = "github.com/gojinn/gojinn/runtime"

// Attributes the runtime sets on the caller's invocation span and on its
// own spans.
const (
	// AttrPoolWait is the time, in microseconds, a pooled invocation
	// waited for an instance.
	AttrPoolWait = attribute.Key("gojinn.pool.wait_us")
	// AttrInstantiated says the invocation created a sandbox (isolated
	// mode always; pooled mode when no warm instance was idle).
	AttrInstantiated = attribute.Key("gojinn.instantiated")
	// AttrCompileSource is where a compile span's code came from:
	// SourceDisk or SourceCompiled.
	AttrCompileSource = attribute.Key("gojinn.compile.source")
	// AttrCPUTime is the CPU time, in microseconds, the guest's thread
	// used.
	AttrCPUTime = attribute.Key("gojinn.cpu_us")
)

// recording returns ctx's span when it records, else nil.
func recording(ctx context.Context) trace.Span {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		return s
	}
	return nil
}

// startSpan starts a child of ctx's span when that span records; else it
// returns ctx and nil, and costs one context lookup.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := recording(ctx)
	if parent == nil {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(TracerName).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// recordSpan records a finished child span of ctx's span that ran from
// start until now, when ctx's span records.
func recordSpan(ctx context.Context, name string, start time.Time, failed bool, attrs ...attribute.KeyValue) {
	parent := recording(ctx)
	if parent == nil {
		return
	}
	_, span := parent.TracerProvider().Tracer(TracerName).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	if failed {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}
