package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// A reset restores linear memory and globals, not tables or segments
// (wazero cannot), so a module whose handler writes a table or drops a
// segment is refused with reset, by Load and Check, naming the
// instruction and what to do. Without reset it is accepted, and the
// second request on an instance sees what the first did: the channel
// the refusal closes.
func TestResetRefusesTableAndSegmentWrites(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		wat, instr, effect string
		second             error // of the second request without reset; nil: it answers 201
	}{
		{"reset-table-set", "table.set", "changes a table", nil},
		{"reset-table-grow", "table.grow", "changes a table", nil},
		{"reset-table-fill", "table.fill", "changes a table", nil},
		{"reset-table-copy", "table.copy", "changes a table", nil},
		{"reset-table-init", "table.init", "changes a table", nil},
		{"reset-elem-drop", "elem.drop", "drops an element segment", runtime.ErrTrap},
		{"reset-data-drop", "data.drop", "drops a data segment", runtime.ErrTrap},
	} {
		t.Run(tc.instr, func(t *testing.T) {
			mod := wat(t, tc.wat)
			for _, reset := range []runtime.Reset{runtime.ResetCopy, runtime.ResetCoW, runtime.ResetAuto} {
				spec := runtime.FunctionSpec{Name: tc.wat, Version: "v1", Module: mod, Mode: runtime.ModePooled, Reset: reset}
				for what, err := range map[string]error{"Check": e.Check(context.Background(), spec), "Load": loadErr(e, spec)} {
					if !errors.Is(err, runtime.ErrInvalidModule) {
						t.Fatalf("reset %s: %s: %v, want ErrInvalidModule", reset, what, err)
					}
					for _, s := range []string{"function 1", tc.instr + " at byte offset", tc.effect, "deploy it in pooled mode without reset", "or isolated"} {
						if !strings.Contains(err.Error(), s) {
							t.Fatalf("reset %s: %s: %q does not say %q", reset, what, err, s)
						}
					}
				}
			}
			if _, ok := e.Function(tc.wat); ok {
				t.Fatal("a refused Load left the function loaded")
			}

			f := load(t, e, runtime.FunctionSpec{Name: tc.wat, Module: mod, Mode: runtime.ModePooled, Limits: runtime.Limits{MaxInstances: 1}})
			if st, _ := mustInvoke(t, f, get("/")); st != 200 {
				t.Fatalf("first request: status %d, want 200", st)
			}
			res, err := invoke(t, f, get("/"))
			switch {
			case tc.second != nil && !errors.Is(err, tc.second):
				t.Fatalf("second request without reset: %v, want %v", err, tc.second)
			case tc.second == nil && err != nil:
				t.Fatalf("second request without reset: %v", err)
			case tc.second == nil && res.Response.StatusOrDefault() != 201:
				t.Fatalf("second request without reset: status %d, want 201 (the first request's %s seen)", res.Response.StatusOrDefault(), tc.instr)
			}

			iso := load(t, e, runtime.FunctionSpec{Name: tc.wat + "-isolated", Module: mod, Mode: runtime.ModeIsolated})
			for i := range 2 {
				if st, _ := mustInvoke(t, iso, get("/")); st != 200 {
					t.Fatalf("isolated request %d: status %d, want 200", i, st)
				}
			}
		})
	}
}

// Writes that run only before the snapshot (in the start function and
// _initialize) are the same for every request and are accepted with
// reset; _initialize called again from the handler is not.
func TestResetAcceptsTableWritesDuringInitialisation(t *testing.T) {
	e := newEngine(t)
	for _, reset := range []runtime.Reset{runtime.ResetCopy, runtime.ResetCoW} {
		spec := runtime.FunctionSpec{Name: "init-" + string(reset), Version: "v1", Module: wat(t, "reset-init-tables"),
			Mode: runtime.ModePooled, Reset: reset, Limits: runtime.Limits{MaxInstances: 1}}
		if err := e.Check(context.Background(), spec); err != nil {
			t.Fatalf("reset %s: Check: %v", reset, err)
		}
		f := load(t, e, spec)
		for i := range 3 {
			if st, _ := mustInvoke(t, f, get("/")); st != 200 {
				t.Fatalf("reset %s: request %d: status %d", reset, i, st)
			}
		}
		if st := f.Stats(); st.Instances != 1 {
			t.Fatalf("reset %s: want the single instance reused, stats %+v", reset, st)
		}
	}
	_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "init-called", Module: wat(t, "reset-init-called"),
		Mode: runtime.ModePooled, Reset: runtime.ResetCoW})
	if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), `function 1 (exported as "_initialize") uses table.set`) {
		t.Fatalf("_initialize called by the handler: %v, want ErrInvalidModule naming table.set in _initialize", err)
	}
}

// The Go guests (the SDK's code and Go's runtime) write no tables and
// drop no segments: every test guest deploys with reset. (The examples'
// own tests load them with reset, enginetest.GoModes.)
func TestGoGuestsDeployWithReset(t *testing.T) {
	e := newEngine(t)
	for _, g := range []string{"abuse", "json3mb", "kv", "log"} {
		t.Run(g, func(t *testing.T) {
			mod := runtimetest.BuildGo(t, "runtime/testdata/guests/"+g, true)
			spec := runtime.FunctionSpec{Name: g, Version: "v1", Module: mod, Mode: runtime.ModePooled, Reset: runtime.ResetCoW,
				Limits: runtime.Limits{MemoryBytes: 256 << 20}}
			if err := e.Check(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// loadErr loads spec and returns Load's error, unloading what it loaded.
func loadErr(e *runtime.Engine, spec runtime.FunctionSpec) error {
	f, err := e.Load(context.Background(), spec)
	if err == nil {
		_ = e.Unload(context.Background(), f.Name())
		return fmt.Errorf("Load accepted it")
	}
	return err
}
