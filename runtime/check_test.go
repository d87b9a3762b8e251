package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"

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
