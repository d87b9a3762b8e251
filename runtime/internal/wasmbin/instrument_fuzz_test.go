package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// allFeatures enables every feature wazero v1.12 has, so that as many fuzz
// inputs as possible compile.
const allFeatures = api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall |
	experimental.CoreFeaturesExtendedConst | experimental.CoreFeaturesExceptionHandling |
	experimental.CoreFeaturesTypedFunctionReferences

func FuzzInstrumentLoops(f *testing.F) {
	for _, tc := range loopCases() {
		f.Add(tc.build(&mb{}))
	}
	for _, tc := range validCases() {
		f.Add(tc.wasm)
	}
	f.Add(spinModule())
	f.Add(bulkLoopModule())
	f.Add(wasmModule())

	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
	f.Cleanup(func() { r.Close(ctx) })
	// compiles reports whether wazero compiles wasm. wazero v1.12 panics
	// on some invalid modules with exception handling enabled (a tag whose
	// type index is out of range), so a panic counts as a rejection; the
	// engine does not enable that feature.
	compiles := func(wasm []byte) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("wazero panicked: %v", p)
			}
		}()
		cm, err := r.CompileModule(ctx, wasm)
		if err == nil {
			cm.Close(ctx)
		}
		return err
	}
	sentinels := []error{ErrMalformed, ErrNameConflict, ErrTooLarge, ErrUnsupportedInstruction}

	f.Fuzz(func(t *testing.T, wasm []byte) {
		in := bytes.Clone(wasm)
		out, err := InstrumentLoops(wasm)
		if !bytes.Equal(in, wasm) {
			t.Fatal("input was modified")
		}
		if err != nil {
			if out != nil {
				t.Fatal("non-nil output with an error")
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v wraps %d sentinels, want 1", err, n)
			}
			return
		}
		_, exports, err := ExportMutableGlobals(out)
		if err != nil {
			t.Fatalf("ExportMutableGlobals rejected the output: %v", err)
		}
		found := false
		for _, e := range exports {
			found = found || e.Name == StopGlobalName
		}
		if !found {
			t.Fatalf("%s is not among the mutable globals %v", StopGlobalName, exports)
		}
		if _, err := InstrumentLoops(out); !errors.Is(err, ErrNameConflict) {
			t.Fatalf("instrumenting the output again: %v, want ErrNameConflict", err)
		}
		if CheckLimits(wasm) == nil && compiles(wasm) == nil {
			if err := compiles(out); err != nil {
				t.Fatalf("wazero compiles the input but not the output: %v", err)
			}
		}
	})
}
