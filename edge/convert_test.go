package edge_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/guestlog"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The handler carries method, path, query, headers and a binary body to
// the guest and its status, headers and body back, over a real socket.
func TestHandlerRoundTrip(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "echo", Module: runtimetest.BuildGo(t, "examples/echo", true), Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Function: "echo", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer srv.Close()

	body := []byte{0, 0xff, 'x', '\n'}
	req, _ := http.NewRequest("POST", srv.URL+"/raw?status=202&set=X-A:1&set=X-A:2", bytes.NewReader(body))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 || !bytes.Equal(got, body) || len(resp.Header.Values("X-A")) != 2 {
		t.Fatalf("got %d %v %v", resp.StatusCode, got, resp.Header)
	}

	resp, err = srv.Client().Get(srv.URL + "/p?q=1")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(got), "GET /p HTTP/1.1") || !strings.Contains(string(got), "query q=1") {
		t.Fatalf("echo: %s", got)
	}
}

// Failures become the status the runtime maps them to; dev mode shows why.
func TestHandlerErrors(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "loop", Module: runtimetest.WAT(t, "runtime/testdata/wat/loop.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{Timeout: 100 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		h      *edge.Handler
		body   string
		status int
		want   string
	}{
		{&edge.Handler{Invoker: e, Function: "loop", Logger: quiet}, "", 504, "Gateway Timeout"},
		{&edge.Handler{Invoker: e, Function: "loop", Dev: true, Logger: quiet}, "", 504, "still running after 100ms"},
		{&edge.Handler{Invoker: e, Function: "missing", Logger: quiet}, "", 404, "Not Found"},
		{&edge.Handler{Invoker: e, Function: "loop", MaxBody: 10, Logger: quiet}, strings.Repeat("x", 11), 413, "exceeds the node's limit of 10 bytes"},
	}
	for i, c := range cases {
		srv := httptest.NewServer(c.h)
		resp, err := srv.Client().Post(srv.URL+"/", "text/plain", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(got), c.want) {
			t.Errorf("case %d: %d %q, want %d with %q", i, resp.StatusCode, got, c.status, c.want)
		}
	}
}

// A failed invocation also goes to the function's own log (source host),
// so `gojinn-node logs FN` shows it beside the guest's lines; the node's
// log line stays the handler's.
func TestHandlerFailureInFunctionLogs(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "loop", Version: "3", Module: runtimetest.WAT(t, "runtime/testdata/wat/loop.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{Timeout: 100 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	logs := guestlog.New(guestlog.Config{})
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Function: "loop", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FunctionLogs: logs})
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	recs := logs.Recent("loop", guestlog.Filter{})
	if len(recs) != 1 || recs[0].Source != runtime.LogSourceHost || recs[0].Level != slog.LevelError || recs[0].Version != "3" ||
		!strings.Contains(recs[0].Message, "invocation failed (504)") || !strings.Contains(recs[0].Message, "still running after 100ms") ||
		recs[0].RequestID == "" {
		t.Fatalf("function log after a timeout: %+v", recs)
	}
}
