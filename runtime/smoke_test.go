package runtime_test

import (
	"testing"

	"github.com/gojinn/gojinn/runtime"
)

func TestSmokeAllModes(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset})
			for i := 0; i < 3; i++ {
				st, body := mustInvoke(t, f, get("/ok"))
				if st != 200 || body != "ok" {
					t.Fatalf("got %d %q", st, body)
				}
			}
		})
	}
}
