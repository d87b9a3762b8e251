package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gojinn/gojinn/edge"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// defaultServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
const defaultServiceName = "gojinn-node"

// errUnsupportedTraceExport is returned for an OTEL_* value the node cannot
// honour.
var errUnsupportedTraceExport = errors.New("unsupported trace export setting")

// tracing is the node's OpenTelemetry trace export: an OTLP exporter
// behind a batching tracer provider. A nil *tracing (nothing configured)
// does nothing.
type tracing struct {
	tp  *sdktrace.TracerProvider
	log *slog.Logger
}

// startTracing sets up trace export from the standard OTEL_* environment
// variables and, when it is on, gives h a tracer. With no endpoint set it
// returns nil and h keeps no tracer, so requests do no span work.
//
// A setting the node cannot honour is logged and tracing stays off rather
// than the node failing to start, as OpenTelemetry's error handling
// principles ask: telemetry must not take the service down.
func startTracing(ctx context.Context, log *slog.Logger, h *edge.Handler) *tracing {
	tp, err := tracerProviderFromEnv(ctx, os.Getenv)
	if err != nil {
		log.Error("tracing is off: fix the OTEL_* environment variables and restart", "err", err)
		return nil
	}
	if tp == nil {
		return nil
	}
	h.Tracer = edge.NewTracer(tp)
	// Export failures reach OpenTelemetry's process-wide error handler,
	// which would print plain text to stderr: send them to the node's
	// JSON log. In a process running several nodes (tests) the last one
	// started gets them.
	elog := log.With("component", "otel")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { elog.Warn("trace export", "err", err) }))
	log.Info("tracing on: exporting spans with OTLP", "protocol", traceProtocol(os.Getenv))
	return &tracing{tp: tp, log: log}
}

// shutdown flushes the spans still batched and stops the exporter, within
// 5 seconds so an unreachable collector cannot hold the node up.
func (t *tracing) shutdown(ctx context.Context) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.tp.Shutdown(ctx); err != nil {
		t.log.Warn("tracing shutdown: spans may be lost", "err", err)
	}
}

// tracerProviderFromEnv builds the tracer provider the variables read by
// getenv ask for, or returns nil when they ask for none: no
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and
// no OTEL_TRACES_EXPORTER=otlp), or OTEL_SDK_DISABLED=true, or
// OTEL_TRACES_EXPORTER=none. The exporters, the sampler
// (OTEL_TRACES_SAMPLER) and the batcher (OTEL_BSP_*) read their own
// variables from the process environment.
func tracerProviderFromEnv(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return nil, nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
	case "otlp":
	default:
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: use otlp or none", errUnsupportedTraceExport, exp)
	}
	var client otlptrace.Client
	switch p := traceProtocol(getenv); p {
	case "http/protobuf":
		client = otlptracehttp.NewClient()
	case "grpc":
		client = otlptracegrpc.NewClient()
	default:
		return nil, fmt.Errorf("%w: OTLP protocol %q: use http/protobuf or grpc", errUnsupportedTraceExport, p)
	}
	// New does not dial: a collector that is down costs dropped spans,
	// not a failed start.
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// Later options win: the environment overrides the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(defaultServiceName), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("otel resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// traceProtocol is the OTLP protocol for traces: the signal's own
// variable, then the general one, then http/protobuf, the default the
// specification recommends.
func traceProtocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return strings.ToLower(v)
		}
	}
	return "http/protobuf"
}
