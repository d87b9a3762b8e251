package main

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otelVars are the variables that can turn trace export on; tests clear
// them so the environment the suite runs in cannot leak in.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

func clearOtelEnv(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
}

// TestTracingOffWithoutEnv: with no OTEL_* variable there is no tracer
// provider and the handler gets no tracer, so it does no span work; the
// off switches win over an endpoint, and a protocol the node cannot speak
// is an error that leaves tracing off.
func TestTracingOffWithoutEnv(t *testing.T) {
	clearOtelEnv(t)
	ctx := context.Background()
	tp, err := tracerProviderFromEnv(ctx, os.Getenv)
	if tp != nil || err != nil {
		t.Fatalf("no env: provider %v, err %v; want none", tp, err)
	}
	h := &edge.Handler{}
	if tr := startTracing(ctx, slog.New(slog.DiscardHandler), h); tr != nil || h.Tracer != nil {
		t.Fatalf("no env: tracing %v, handler tracer %v; want nil", tr, h.Tracer)
	}
	tr := (*tracing)(nil)
	tr.shutdown(ctx) // nil-safe, as node.stop relies on

	for name, env := range map[string]map[string]string{
		"sdk disabled":  {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
		"exporter none": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
	} {
		tp, err := tracerProviderFromEnv(ctx, func(k string) string { return env[k] })
		if tp != nil || err != nil {
			t.Errorf("%s: provider %v, err %v; want none", name, tp, err)
		}
	}
	for name, env := range map[string]map[string]string{
		"http/json": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		"zipkin":    {"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		if _, err := tracerProviderFromEnv(ctx, func(k string) string { return env[k] }); !errors.Is(err, errUnsupportedTraceExport) {
			t.Errorf("%s: err %v, want errUnsupportedTraceExport", name, err)
		}
	}
}

// otlpReceiver is an OTLP trace receiver over HTTP (POST /v1/traces with
// a protobuf ExportTraceServiceRequest) and gRPC (TraceService/Export).
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	res   map[string]string // resource attributes seen
}

func (rc *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			rc.res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
}

// Export implements the gRPC TraceService.
func (rc *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rc.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, "decoding ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.add(&req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startReceiver serves rc over protocol and returns its endpoint URL.
func startReceiver(t *testing.T, rc *otlpReceiver, protocol string) string {
	t.Helper()
	if protocol == "grpc" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(gs, rc)
		go func() { _ = gs.Serve(l) }()
		t.Cleanup(gs.Stop)
		return "http://" + l.Addr().String()
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv.URL
}

// find returns the spans of trace tid once want of them have arrived.
func (rc *otlpReceiver) find(t *testing.T, tid []byte, want int) []*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got []*tracepb.Span
		rc.mu.Lock()
		for _, s := range rc.spans {
			if string(s.GetTraceId()) == string(tid) {
				got = append(got, s)
			}
		}
		rc.mu.Unlock()
		if len(got) >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans of trace %x arrived within 15s, want %d", len(got), tid, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// traceparentWAT is an isolated-mode guest that answers with the
// traceparent field of the request JSON it reads on stdin, so the test
// sees exactly what reached the guest.
const traceparentWAT = `(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "\"traceparent\":\"")
  (data (i32.const 128) "{\"status\":200,\"body\":\"")
  (data (i32.const 192) "\"}\0a")
  (func (export "_start")
    (local $total i32) (local $n i32) (local $i i32) (local $j i32) (local $found i32)
    (block $done
      (loop $read
        (i32.store (i32.const 0) (i32.add (i32.const 4096) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 120000) (local.get $total)))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $read)))
    (local.set $found (i32.const -1))
    (block $out
      (loop $scan
        (br_if $out (i32.gt_s (i32.add (local.get $i) (i32.const 70)) (local.get $total)))
        (local.set $j (i32.const 0))
        (block $miss
          (loop $cmp
            (br_if $miss (i32.ne
              (i32.load8_u (i32.add (i32.const 4096) (i32.add (local.get $i) (local.get $j))))
              (i32.load8_u (i32.add (i32.const 64) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $cmp (i32.lt_u (local.get $j) (i32.const 15))))
          (local.set $found (i32.add (local.get $i) (i32.const 15)))
          (br $out))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (call $write (i32.const 128) (i32.const 22))
    (if (i32.ge_s (local.get $found) (i32.const 0))
      (then (call $write (i32.add (i32.const 4096) (local.get $found)) (i32.const 55))))
    (call $write (i32.const 192) (i32.const 3)))
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
`

func buildWAT(t *testing.T, dir, name, src string) string {
	t.Helper()
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatalf("wat2wasm not found: run `make deps` (installs Debian's wabt): %v", err)
	}
	in, out := filepath.Join(dir, name+".wat"), filepath.Join(dir, name+".wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tool, in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	return out
}

func attrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.GetAttributes() {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(v.BoolValue)
		default:
			m[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
	}
	return m
}

// TestTracingExportsOTLP starts a dev node exporting to an OTLP receiver,
// over HTTP and over gRPC, and sends it a request inside a trace: the
// edge's server span continues the caller's trace, the invocation span is
// its child with the function and outcome, the guest's traceparent names
// the invocation span, and no attribute carries the path or query.
func TestTracingExportsOTLP(t *testing.T) {
	guest := buildWAT(t, t.TempDir(), "traceparent", traceparentWAT)
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(protocol, "/", "_"), func(t *testing.T) { testTracingExport(t, protocol, guest) })
	}
}

func testTracingExport(t *testing.T, protocol, guest string) {
	rc := &otlpReceiver{res: map[string]string{}}
	clearOtelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startReceiver(t, rc, protocol))
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	dir := t.TempDir()
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "tp", guest, "--mode", "isolated", "--route", "/tp/*")

	const tidHex, parentHex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	code, body := n.getTraced("http://"+n.http+"/tp/x?token=s3cr3t", tidHex, "Traceparent", "00-"+tidHex+"-"+parentHex+"-01", "Tracestate", "vendor=abc")
	if code != http.StatusOK {
		t.Fatalf("GET /tp/x: %d %q", code, body)
	}

	tid, _ := hex.DecodeString(tidHex)
	parent, _ := hex.DecodeString(parentHex)
	spans := rc.find(t, tid, 2)
	var server, invoke *tracepb.Span
	for _, s := range spans {
		switch s.GetName() {
		case "HTTP GET":
			server = s
		case "invoke tp":
			invoke = s
		}
	}
	if server == nil || invoke == nil {
		t.Fatalf("want spans HTTP GET and invoke tp, got %v", spans)
	}
	if string(server.GetParentSpanId()) != string(parent) || server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span parent %x kind %v, want %s SERVER", server.GetParentSpanId(), server.GetKind(), parentHex)
	}
	if server.GetTraceState() != "vendor=abc" {
		t.Errorf("server span tracestate %q, want vendor=abc", server.GetTraceState())
	}
	sa := attrs(server)
	for k, want := range map[string]string{
		"http.request.method": "GET", "url.scheme": "http", "network.protocol.version": "1.1",
		"http.response.status_code": "200", "server.address": "127.0.0.1",
	} {
		if sa[k] != want {
			t.Errorf("server span %s = %q, want %q (all: %v)", k, sa[k], want, sa)
		}
	}
	if string(invoke.GetParentSpanId()) != string(server.GetSpanId()) {
		t.Errorf("invocation span parent %x, want the server span %x", invoke.GetParentSpanId(), server.GetSpanId())
	}
	ia := attrs(invoke)
	for k, want := range map[string]string{"gojinn.function": "tp", "gojinn.outcome": "ok", "gojinn.mode": "isolated", "gojinn.function.version": "1"} {
		if ia[k] != want {
			t.Errorf("invocation span %s = %q, want %q (all: %v)", k, ia[k], want, ia)
		}
	}
	if want := "00-" + tidHex + "-" + hex.EncodeToString(invoke.GetSpanId()) + "-01"; string(body) != want {
		t.Errorf("the guest saw traceparent %q, want the invocation span's %q", body, want)
	}
	for _, s := range spans {
		for k, v := range attrs(s) {
			if strings.Contains(v, "s3cr3t") || strings.Contains(v, "/tp/x") {
				t.Errorf("span %s attribute %s = %q records the URL", s.GetName(), k, v)
			}
		}
	}
	testTracingHostCalls(t, n, rc)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.res["service.name"] != defaultServiceName {
		t.Errorf("service.name %q, want %q", rc.res["service.name"], defaultServiceName)
	}
}

// testTracingHostCalls sends a request to the counter example (pooled; it
// reads and compare-and-sets a KV key) inside a new trace: under the
// invocation span, which carries the pool wait, come one span per KV host
// call with its result, and none records the key.
func testTracingHostCalls(t *testing.T, n *devNode, rc *otlpReceiver) {
	t.Helper()
	n.cli(0, "deploy", "counter", writeModule(t, t.TempDir(), "counter.wasm", runtimetest.BuildGo(t, "examples/counter", true)),
		"--mode", "pooled", "--route", "/count/*")
	const tidHex = "0af7651916cd43dd8448eb211c80319c"
	if code, body := n.getTraced("http://"+n.http+"/count/trace-key", tidHex); code != http.StatusOK {
		t.Fatalf("GET /count/trace-key: %d %q", code, body)
	}
	tid, _ := hex.DecodeString(tidHex)
	byName := map[string]*tracepb.Span{}
	for _, s := range rc.find(t, tid, 5) { // server, invoke, instantiate, kv.get, kv.put
		byName[s.GetName()] = s
	}
	invoke := byName["invoke counter"]
	if invoke == nil || byName["HTTP GET"] == nil {
		t.Fatalf("want spans HTTP GET and invoke counter, got %v", byName)
	}
	if a := attrs(invoke); a["gojinn.pool.wait_us"] == "" || a["gojinn.instantiated"] != "true" {
		t.Errorf("the first pooled invocation's span lacks its pool wait or instantiation: %v", a)
	}
	// The runtime's own span: the pool's first instance was created for
	// this request.
	if s := byName["instantiate counter"]; s == nil || string(s.GetParentSpanId()) != string(invoke.GetSpanId()) {
		t.Errorf("no runtime span instantiate counter under the invocation; spans: %v", byName)
	}
	for name, result := range map[string]string{"kv.get": "not_found", "kv.put": "ok"} {
		s := byName[name]
		if s == nil {
			t.Errorf("no %s span under the invocation; spans: %v", name, byName)
			continue
		}
		if string(s.GetParentSpanId()) != string(invoke.GetSpanId()) {
			t.Errorf("%s parent %x, want the invocation span %x", name, s.GetParentSpanId(), invoke.GetSpanId())
		}
		if a := attrs(s); a["gojinn.kv.result"] != result || a["db.system.name"] != "gojinn_kv" {
			t.Errorf("%s attributes %v, want gojinn.kv.result %s", name, a, result)
		}
		for k, v := range attrs(s) {
			if strings.Contains(v, "trace-key") {
				t.Errorf("%s attribute %s = %q records the key", name, k, v)
			}
		}
	}
}
