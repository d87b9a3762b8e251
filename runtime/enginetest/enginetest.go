// Package enginetest starts real runtime engines and runs guests through
// them in every execution mode, for tests outside the runtime package
// (examples, edge, the node).
package enginetest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Mode is one way to run a guest.
type Mode struct {
	Name    string
	Mode    runtime.Mode
	Reset   runtime.Reset
	Reactor bool // load the -buildmode=c-shared build
}

// GoModes are the modes a Go guest built with the SDK runs in.
var GoModes = []Mode{
	{"isolated-command", runtime.ModeIsolated, runtime.ResetNone, false},
	{"isolated-reactor", runtime.ModeIsolated, runtime.ResetNone, true},
	{"pooled", runtime.ModePooled, runtime.ResetNone, true},
	{"pooled-cow", runtime.ModePooled, runtime.ResetCoW, true},
	{"pooled-copy", runtime.ModePooled, runtime.ResetCopy, true},
}

// Engine starts an engine sharing the test compilation cache.
func Engine(t testing.TB) *runtime.Engine {
	t.Helper()
	cfg := runtime.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = runtimetest.CacheDir()
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// LoadGo builds the Go guest in dir (relative to the module root) for m
// and loads it.
func LoadGo(t testing.TB, e *runtime.Engine, dir string, m Mode) *runtime.Function {
	t.Helper()
	f, err := e.Load(context.Background(), runtime.FunctionSpec{
		Name: m.Name, Version: "test", Module: runtimetest.BuildGo(t, dir, m.Reactor), Mode: m.Mode, Reset: m.Reset,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Request builds a protocol request for method and target ("/p?q").
func Request(method, target string, header http.Header, body []byte) *protocol.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	if header == nil {
		header = http.Header{}
	}
	return &protocol.Request{
		Method: method, URI: target, Path: u.Path, RawQuery: u.RawQuery, Headers: header, Body: body,
		Host: "example.test", Scheme: "https", Proto: "HTTP/2.0", RemoteAddr: "192.0.2.7:4444", RequestID: "rid-1",
	}
}

// Invoke runs req and fails the test on error. The response's Headers is
// filled (pooled calls return their headers as Fields), so tests can look
// headers up in the map either way.
func Invoke(t testing.TB, f *runtime.Function, req *protocol.Request) *protocol.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := f.Invoke(ctx, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URI, err)
	}
	res.Response.Headers = res.Response.HeaderMap()
	return res.Response
}
