package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// Check rejects what Load rejects, with the same reason, and leaves no
// function behind either way.
func TestCheck(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tiny := wat(t, "tiny-reactor")
	if err := e.Check(ctx, runtime.FunctionSpec{Name: "ok", Module: tiny, Mode: runtime.ModePooled}); err != nil {
		t.Fatalf("good module: %v", err)
	}
	for _, c := range []struct {
		spec runtime.FunctionSpec
		want error
		msg  string
	}{
		{runtime.FunctionSpec{Name: "f", Module: []byte("not wasm")}, runtime.ErrInvalidModule, "magic"},
		{runtime.FunctionSpec{Name: "f", Module: wat(t, "cmd-loop"), Mode: runtime.ModePooled}, runtime.ErrInvalidModule, "-buildmode=c-shared"},
		{runtime.FunctionSpec{Name: "f", Module: tiny, Mode: "turbo"}, runtime.ErrInvalidSpec, "turbo"},
	} {
		err := e.Check(ctx, c.spec)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s/%s: got %v, want %v containing %q", c.spec.Name, c.spec.Mode, err, c.want, c.msg)
		}
	}
	for _, name := range []string{"ok", "f"} {
		if _, ok := e.Function(name); ok {
			t.Errorf("Check left function %q loaded", name)
		}
	}
}

// Check also initialises a reactor once: a module that cannot initialise
// (here a loop in _initialize past the timeout, and a Go guest whose
// runtime rejects its environment) is refused with the reason and the
// guest's stderr; good Go guests pass in every mode, and a command module
// is not started (it needs a request).
func TestCheckInitialises(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		spec runtime.FunctionSpec
		msg  []string // empty: the check passes
	}{
		{"init loop", runtime.FunctionSpec{Module: wat(t, "init-loop"), Mode: runtime.ModePooled,
			Limits: runtime.Limits{Timeout: 200 * time.Millisecond}}, []string{"failed to initialise", "timeout"}},
		{"bad GOMEMLIMIT", runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
			Env: map[string]string{"GOMEMLIMIT": "lots"}}, []string{"failed to initialise", "guest stderr", "malformed GOMEMLIMIT"}},
		{"go pooled", runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled}, nil},
		{"go pooled cow", runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled, Reset: runtime.ResetCoW}, nil},
		{"go isolated reactor", runtime.FunctionSpec{Module: abuseReactor(t)}, nil},
		{"go command, not started", runtime.FunctionSpec{Module: abuseCommand(t), Env: map[string]string{"GOMEMLIMIT": "lots"}}, nil},
	} {
		c.spec.Name = "check"
		err := e.Check(ctx, c.spec)
		if len(c.msg) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, runtime.ErrInvalidModule) || strings.Contains(err.Error(), "@") {
			t.Errorf("%s: %v, want ErrInvalidModule without a function@version", c.name, err)
			continue
		}
		for _, m := range c.msg {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: %q does not say %q", c.name, err, m)
			}
		}
	}
	if _, ok := e.Function("check"); ok {
		t.Error("Check left the function loaded")
	}
}
