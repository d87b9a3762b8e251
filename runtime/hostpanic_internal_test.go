package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gojinn/gojinn/runtime/runtimetest"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// switchReader panics, once armed, when the guest asks for random bytes:
// a stand-in for any host function that fails badly.
type switchReader struct{ armed atomic.Bool }

func (r *switchReader) Read(p []byte) (int, error) {
	if r.armed.Load() {
		panic("host function exploded")
	}
	return rand.Read(p)
}

// A host function that panics ends that invocation with ErrTrap; the
// engine, the function and the node carry on.
func TestHostFunctionPanic(t *testing.T) {
	mod := runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", true)
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = runtimetest.CacheDir()
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	f, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: mod, Mode: ModePooled})
	if err != nil {
		t.Fatal(err)
	}
	sr := &switchReader{}
	f.base = f.base.WithRandSource(sr) // before the pool creates an instance
	req := func(path string) *protocol.Request {
		return &protocol.Request{Method: "GET", URI: path, Path: path}
	}
	if _, err := f.Invoke(context.Background(), req("/ok")); err != nil {
		t.Fatal(err)
	}
	sr.armed.Store(true)
	_, err = f.Invoke(context.Background(), req("/rand"))
	sr.armed.Store(false)
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "host function exploded") {
		t.Fatalf("got %v, want ErrTrap naming the panic", err)
	}
	res, err := f.Invoke(context.Background(), req("/ok"))
	if err != nil || string(res.Response.Body) != "ok" {
		t.Fatalf("after the host panic: %v %v", res, err)
	}
}
