package runtime_test

import (
	"context"
	"errors"
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

// Guest modules, built once per test binary (runtimetest caches them).
func abuseCommand(t testing.TB) []byte {
	return runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", false)
}

func abuseReactor(t testing.TB) []byte {
	return runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", true)
}

func wat(t testing.TB, name string) []byte {
	return runtimetest.WAT(t, "runtime/testdata/wat/"+name+".wat")
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEngine starts an engine that the test closes.
func newEngine(t testing.TB, mod ...func(*runtime.Config)) *runtime.Engine {
	t.Helper()
	cfg := runtime.DefaultConfig()
	cfg.Logger = quietLogger()
	cfg.CacheDir = runtimetest.CacheDir()
	for _, m := range mod {
		m(&cfg)
	}
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e
}

func load(t testing.TB, e *runtime.Engine, spec runtime.FunctionSpec) *runtime.Function {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "fn"
	}
	if spec.Version == "" {
		spec.Version = "v1"
	}
	f, err := e.Load(context.Background(), spec)
	if err != nil {
		t.Fatalf("load %s: %v", spec.Name, err)
	}
	return f
}

// get builds a GET request for target ("/path?query").
func get(target string) *protocol.Request {
	return request(http.MethodGet, target, nil)
}

func request(method, target string, body []byte) *protocol.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	return &protocol.Request{
		Method: method, URI: target, Path: u.Path, RawQuery: u.RawQuery,
		Headers: http.Header{"User-Agent": {"gojinn-test"}}, Body: body,
		Host: "example.test", Scheme: "https", Proto: "HTTP/1.1",
		RemoteAddr: "192.0.2.1:1234", RequestID: "req-1",
	}
}

func invoke(t testing.TB, f *runtime.Function, req *protocol.Request) (*runtime.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.Invoke(ctx, req)
}

// mustInvoke invokes and fails the test on error, returning status and body.
func mustInvoke(t testing.TB, f *runtime.Function, req *protocol.Request) (int, string) {
	t.Helper()
	res, err := invoke(t, f, req)
	if err != nil {
		var ie *runtime.InvokeError
		if errors.As(err, &ie) && len(ie.Stderr) > 0 {
			t.Fatalf("invoke %s %s: %v\nguest stderr:\n%s", req.Method, req.URI, err, ie.Stderr)
		}
		t.Fatalf("invoke %s %s: %v", req.Method, req.URI, err)
	}
	return res.Response.StatusOrDefault(), string(res.Response.Body)
}

// modes lists the ways one reactor guest can run, for equivalence tests.
type modeCase struct {
	name  string
	mode  runtime.Mode
	reset runtime.Reset
	cmd   bool // use the command build
}

// abuse returns the abuse guest built for mc: the command build for the
// isolated-command case, the reactor otherwise.
func (mc modeCase) abuse(t testing.TB) []byte {
	if mc.cmd {
		return abuseCommand(t)
	}
	return abuseReactor(t)
}

var allModes = []modeCase{
	{"isolated-command", runtime.ModeIsolated, runtime.ResetNone, true},
	{"isolated-reactor", runtime.ModeIsolated, runtime.ResetNone, false},
	{"pooled", runtime.ModePooled, runtime.ResetNone, false},
	{"pooled-copy", runtime.ModePooled, runtime.ResetCopy, false},
	{"pooled-cow", runtime.ModePooled, runtime.ResetCoW, false},
}
