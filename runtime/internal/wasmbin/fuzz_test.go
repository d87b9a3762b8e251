package wasmbin

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzExportMutableGlobals(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.wasm)
		if tc.env != nil {
			f.Add(tc.env)
		}
	}
	f.Add(wasmModule())
	f.Add(wasmModule(sec(6, vec(global(i32, mutable, i32c(0)))), sec(7, vec(export("__gojinn_global_1", 0, 0)))))
	f.Fuzz(func(t *testing.T, wasm []byte) {
		in := bytes.Clone(wasm)
		out, exports, err := ExportMutableGlobals(wasm)
		if !bytes.Equal(in, wasm) {
			t.Fatal("input was modified")
		}
		if err != nil {
			if out != nil || exports != nil {
				t.Fatal("non-nil results with an error")
			}
			return
		}
		out2, exports2, err := ExportMutableGlobals(out)
		if err != nil {
			t.Fatalf("output rejected: %v", err)
		}
		if !reflect.DeepEqual(exports, exports2) {
			t.Fatalf("exports changed on the second pass: %v then %v", exports, exports2)
		}
		if !bytes.Equal(out, out2) {
			t.Fatal("second pass changed the module")
		}
		mi, err := parse(wasm)
		if err != nil {
			t.Fatal(err)
		}
		mo, err := parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if mo.exportCount < mi.exportCount {
			t.Fatalf("export count went from %d to %d", mi.exportCount, mo.exportCount)
		}
		for _, e := range exports {
			if name, ok := mo.globalNames[e.Index]; !ok || name != e.Name {
				t.Fatalf("global %d is exported as %q, want %q", e.Index, name, e.Name)
			}
		}
		if len(mo.mutable) != len(exports) {
			t.Fatalf("%d mutable globals but %d exports", len(mo.mutable), len(exports))
		}
	})
}
