package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The routing handler answers 404 for unrouted requests, 405 with Allow
// when only the method is wrong, 503 with Retry-After for a routed function
// this node has not loaded yet, and runs loaded functions.
func TestHandlerRouting(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "tiny", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"), Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	router := routerFor(t,
		edge.Route{Host: "a.example", Path: "/tiny/*", Function: "tiny"},
		edge.Route{Host: "a.example", Path: "/only-post", Methods: []string{"POST"}, Function: "tiny"},
		edge.Route{Path: "/pending/*", Function: "not-loaded-yet"},
	)
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Router: router, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer srv.Close()
	do := func(method, host, path string) (answer, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Host = host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return answer{resp.StatusCode, resp.Proto, resp.Header}, string(b)
	}
	if resp, _ := do("GET", "a.example", "/tiny/x"); resp.StatusCode != 200 {
		t.Errorf("routed: %d", resp.StatusCode)
	}
	if resp, body := do("GET", "b.example", "/tiny/x"); resp.StatusCode != 404 || !strings.Contains(body, "no function") {
		t.Errorf("other host: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "a.example", "/only-post"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("wrong method: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// Dot segments are cleaned by a redirect before routing, so
	// /tiny/../only-post never reaches the /tiny/* function.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for raw, want := range map[string]string{"/tiny/../only-post": "/only-post", "/tiny//x": "/tiny/x", "/tiny/./x/": "/tiny/x/"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.URL.Opaque = raw // sent as is, not cleaned by the client
		req.Host = "a.example"
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("%s: %d Location %q, want 308 to %s", raw, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if resp, _ := do("GET", "a.example", "/.well-known/x"); resp.StatusCode != 404 {
		t.Errorf("a clean path with a dot segment name was redirected: %d", resp.StatusCode)
	}
	resp, body := do("GET", "any.example", "/pending/x")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != edge.RetryAfterDeploying || body != "Service Unavailable\n" {
		t.Errorf("deploying: %d Retry-After %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// A client that trickles its headers is cut off at ReadHeaderTimeout, so
// slow clients cannot pin connections.
func TestServerSlowHeaders(t *testing.T) {
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe, ReadHeaderTimeout: 300 * time.Millisecond}, protoHandler)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.plainURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The server closes the connection (possibly after a 408); keep
	// reading until EOF.
	_, _ = io.Copy(io.Discard, c)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("connection held for %s with incomplete headers", waited)
	}
}

func TestTraceID(t *testing.T) {
	for tp, want := range map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"": "", "garbage": "", "00-short-00f067aa0ba902b7-01": "",
		// Not 32 lowercase hex digits: a client's text must not pass for
		// a trace id in the access log.
		`00-"}{"level":"ERROR","msg":"pwned"-0123456789abcdef-01`: "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "",
		"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "",
	} {
		if got := edge.TraceIDForTest(tp); got != want {
			t.Errorf("traceID(%q) = %q, want %q", tp, got, want)
		}
	}
}

// routerFor returns a router serving a table of routes.
// A node catching up with the cluster answers 503 with Retry-After for a
// route its table does not have (it may be missing), never a 404; a
// route it has still serves, and a method it knows a route refuses is
// still 405.
func TestHandlerCatchingUp(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "tiny", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"), Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	table, err := edge.NewRouteTable([]edge.Route{
		{Path: "/tiny/*", Function: "tiny"},
		{Path: "/only-post", Methods: []string{"POST"}, Function: "tiny"},
	})
	if err != nil {
		t.Fatal(err)
	}
	router := &edge.Router{}
	router.Swap(table.CatchingUp())
	for _, dev := range []bool{false, true} {
		srv := httptest.NewServer(&edge.Handler{Invoker: e, Router: router, Dev: dev, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		get := func(method, path string) (int, http.Header, string) {
			req, _ := http.NewRequest(method, srv.URL+path, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header, string(b)
		}
		code, header, body := get("GET", "/unknown")
		if code != 503 || header.Get("Retry-After") != edge.RetryAfterDeploying {
			t.Errorf("dev %v: unknown route while catching up: %d Retry-After %q", dev, code, header.Get("Retry-After"))
		}
		if wantReason := strings.Contains(body, "catching up"); wantReason != dev {
			t.Errorf("dev %v: body %q", dev, body)
		}
		if code, _, _ := get("GET", "/tiny/x"); code != 200 {
			t.Errorf("dev %v: known route while catching up: %d", dev, code)
		}
		if code, _, _ := get("GET", "/only-post"); code != 405 {
			t.Errorf("dev %v: refused method while catching up: %d", dev, code)
		}
		srv.Close()
	}
	router.Swap(table)
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Router: router, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown route once caught up: %d", resp.StatusCode)
	}
}

func routerFor(tb testing.TB, routes ...edge.Route) *edge.Router {
	tb.Helper()
	table, err := edge.NewRouteTable(routes)
	if err != nil {
		tb.Fatal(err)
	}
	router := &edge.Router{}
	router.Swap(table)
	return router
}

// With AccessLog, every request logs one line: routed ones with the
// function, its version, the request id and the trace id of the caller's
// traceparent, the edge's own answers (404 here) too, with the
// X-Request-Id they send; never the query string.
func TestAccessLog(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "tiny", Version: "v7", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"), Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	router := routerFor(t, edge.Route{Path: "/tiny/*", Function: "tiny"})
	var buf syncBuffer
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Router: router, AccessLog: true, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	defer srv.Close()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var edgeAnswerID string
	for _, path := range []string{"/tiny/x?token=s3cret", "/elsewhere"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Traceparent", tp)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if path == "/elsewhere" {
			edgeAnswerID = resp.Header.Get("X-Request-Id")
		}
	}
	if edgeAnswerID == "" {
		t.Error("the edge's own 404 has no X-Request-Id")
	}
	srv.Close() // the handler has returned: every line is written
	out := buf.String()
	if strings.Contains(out, "s3cret") {
		t.Errorf("the access log carries the query string: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2 requests:\n%s", len(lines), out)
	}
	want := []map[string]any{
		{"msg": "request", "method": "GET", "path": "/tiny/x", "status": 200.0, "proto": "HTTP/1.1",
			"function": "tiny", "version": "v7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"msg": "request", "path": "/elsewhere", "status": 404.0, "request_id": edgeAnswerID, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%s)", i, k, got[k], v, line)
			}
		}
		if _, ok := got["duration_ms"]; !ok {
			t.Errorf("line %d has no duration_ms: %s", i, line)
		}
		if id, _ := got["request_id"].(string); len(id) != 24 {
			t.Errorf("line %d: request_id %q, want one for every request", i, id)
		}
		if i == 1 && got["function"] != nil {
			t.Errorf("an unrouted request names a function: %s", line)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
