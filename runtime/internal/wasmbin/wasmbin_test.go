package wasmbin

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// validCase is a well-formed module and what ExportMutableGlobals must make
// of it.
type validCase struct {
	name string
	wasm []byte
	want []GlobalExport
	// same means the output must equal the input (nothing to export).
	same bool
	// features overrides wazero's default core features when non-zero.
	features api.CoreFeatures
	// env, when set, is instantiated under the name "env" first.
	env []byte
	// parseOnly skips the wazero checks (features wazero lacks).
	parseOnly bool
	// check runs extra assertions on the instantiated rewritten module.
	check func(t *testing.T, ctx context.Context, mod api.Module)
}

func ge(idx uint32, name string) GlobalExport { return GlobalExport{Index: idx, Name: name} }

var (
	tVoid   = functype(nil, nil)
	tRetI32 = functype(nil, []byte{i32})
	zeros16 = make([]byte, 16)
	// f64 1.5, little endian.
	f64OneAndHalf = []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f}
)

// counterModule has memory, mutable and immutable globals, an existing
// export section, and start, data count, code, data and custom sections.
func counterModule() []byte {
	return wasmModule(
		sec(1, vec(tRetI32, tVoid)),
		sec(3, vec(uleb(0), uleb(1))),
		sec(5, vec(cat(0x00, uleb(1)))),
		sec(6, vec(global(i32, mutable, i32c(0)), global(i64, constant, i64c(7)), global(i64, mutable, i64c(-5)))),
		sec(7, vec(export("inc", 0, 0), export("mem", 2, 0))),
		sec(8, uleb(1)),
		sec(12, uleb(1)),
		sec(10, vec(
			body(globalGet(0), i32c(1), 0x6a, globalSet(0), globalGet(0)),
			body(i32c(10), globalSet(0)),
		)),
		sec(11, vec(cat(0x00, i32c(0), opEnd, str("hi")))),
		custom("meta", "x"),
	)
}

// noExportModule has no export section and custom sections around the spot
// where the export section must be inserted.
func noExportModule() []byte {
	return wasmModule(
		custom("first", "a"),
		sec(1, vec(tVoid)),
		custom("mid", "bb"),
		sec(3, vec(uleb(0))),
		sec(6, vec(global(i32, mutable, i32c(5)), global(f64, mutable, 0x44, f64OneAndHalf), global(i32, constant, i32c(1)))),
		custom("after-global", "ccc"),
		sec(8, uleb(0)),
		sec(10, vec(body(i32c(9), globalSet(0)))),
		custom("tail", "dddd"),
	)
}

// paddedLEB encodes v in exactly five bytes, as some tools do.
func paddedLEB(v uint32) []byte {
	return []byte{byte(v) | 0x80, byte(v>>7) | 0x80, byte(v>>14) | 0x80, byte(v>>21) | 0x80, byte(v >> 28)}
}

func validCases() []validCase {
	envModule := wasmModule(
		sec(6, vec(global(i32, mutable, i32c(3)), global(i32, constant, i32c(4)))),
		sec(7, vec(export("g", 3, 0), export("c", 3, 1))),
	)
	globalsPayload := vec(global(i32, mutable, i32c(1)))
	exportsPayload := cat(paddedLEB(1), export("get", 0, 0))
	return []validCase{{
		name: "no globals",
		wasm: wasmModule(
			sec(1, vec(tRetI32)), sec(3, vec(uleb(0))),
			sec(7, vec(export("answer", 0, 0))),
			sec(10, vec(body(i32c(42)))),
		),
		same: true,
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			if got := call(t, ctx, mod, "answer"); got != 42 {
				t.Errorf("answer() = %d, want 42", got)
			}
		},
	}, {
		name: "immutable globals only, no export section",
		wasm: wasmModule(sec(6, vec(global(i32, constant, i32c(1)), global(i64, constant, i64c(2))))),
		same: true,
	}, {
		name: "start, code and data after the export section",
		wasm: counterModule(),
		want: []GlobalExport{ge(0, "__gojinn_global_0"), ge(2, "__gojinn_global_2")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			if got := call(t, ctx, mod, "inc"); got != 11 {
				t.Errorf("inc() = %d, want 11 (start sets 10)", got)
			}
			g := mod.ExportedGlobal("__gojinn_global_0").(api.MutableGlobal)
			if g.Get() != 11 {
				t.Errorf("global 0 = %d, want 11", g.Get())
			}
			g.Set(100)
			if got := call(t, ctx, mod, "inc"); got != 101 {
				t.Errorf("inc() after Set(100) = %d, want 101", got)
			}
			if got := int64(mod.ExportedGlobal("__gojinn_global_2").Get()); got != -5 {
				t.Errorf("global 2 = %d, want -5", got)
			}
			if mod.ExportedGlobal("__gojinn_global_1") != nil {
				t.Error("immutable global 1 was exported")
			}
			if b, ok := mod.Memory().Read(0, 2); !ok || string(b) != "hi" {
				t.Errorf("data segment = %q, %v", b, ok)
			}
		},
	}, {
		name: "imported globals offset the index space",
		env:  envModule,
		wasm: wasmModule(
			sec(1, vec(tRetI32)),
			sec(2, vec(imp("env", "g", 3, i32, mutable), imp("env", "c", 3, i32, constant))),
			sec(3, vec(uleb(0))),
			sec(6, vec(global(i32, mutable, i32c(20)), global(i32, constant, globalGet(1)), global(i64, mutable, i64c(1<<40)))),
			sec(7, vec(export("get", 0, 0))),
			sec(10, vec(body(globalGet(2), globalGet(0), 0x6a))),
		),
		want: []GlobalExport{ge(2, "__gojinn_global_2"), ge(4, "__gojinn_global_4")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			for _, name := range []string{"__gojinn_global_0", "__gojinn_global_1", "__gojinn_global_3"} {
				if mod.ExportedGlobal(name) != nil {
					t.Errorf("%s is exported; only defined mutable globals should be", name)
				}
			}
			mod.ExportedGlobal("__gojinn_global_2").(api.MutableGlobal).Set(30)
			if got := call(t, ctx, mod, "get"); got != 33 {
				t.Errorf("get() = %d, want 33", got)
			}
			if got := mod.ExportedGlobal("__gojinn_global_4").Get(); got != 1<<40 {
				t.Errorf("global 4 = %d, want 1<<40", got)
			}
		},
	}, {
		name: "already exported globals keep their first name",
		wasm: wasmModule(
			sec(6, vec(global(i32, mutable, i32c(1)), global(i32, mutable, i32c(2)), global(i32, constant, i32c(3)))),
			sec(7, vec(export("counter", 3, 0), export("counter_alias", 3, 0), export("k", 3, 2))),
		),
		want: []GlobalExport{ge(0, "counter"), ge(1, "__gojinn_global_1")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			mod.ExportedGlobal("counter").(api.MutableGlobal).Set(77)
			if got := mod.ExportedGlobal("counter_alias").Get(); got != 77 {
				t.Errorf("alias = %d, want 77", got)
			}
			if mod.ExportedGlobal("__gojinn_global_0") != nil {
				t.Error("already exported global 0 got a second export")
			}
		},
	}, {
		name: "no export section, custom sections kept in place",
		wasm: noExportModule(),
		want: []GlobalExport{ge(0, "__gojinn_global_0"), ge(1, "__gojinn_global_1")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			if got := mod.ExportedGlobal("__gojinn_global_0").Get(); got != 9 {
				t.Errorf("global 0 = %d, want 9 (set by start)", got)
			}
			if got := math.Float64frombits(mod.ExportedGlobal("__gojinn_global_1").Get()); got != 1.5 {
				t.Errorf("global 1 = %v, want 1.5", got)
			}
		},
	}, {
		name: "every value type",
		wasm: wasmModule(
			sec(1, vec(tVoid)), sec(3, vec(uleb(0))),
			sec(6, vec(
				global(i32, mutable, i32c(-1)),
				global(i64, mutable, i64c(math.MinInt64)),
				global(f32, mutable, 0x43, []byte{0, 0, 0xc0, 0x3f}),
				global(f64, mutable, 0x44, f64OneAndHalf),
				global(v128, mutable, 0xfd, 0x0c, bytes.Repeat([]byte{7}, 16)),
				global(fref, mutable, 0xd2, uleb(0)),
				global(fref, mutable, 0xd0, fref),
				global(xref, mutable, 0xd0, xref),
			)),
			sec(10, vec(body())),
		),
		want: []GlobalExport{
			ge(0, "__gojinn_global_0"), ge(1, "__gojinn_global_1"), ge(2, "__gojinn_global_2"), ge(3, "__gojinn_global_3"),
			ge(4, "__gojinn_global_4"), ge(5, "__gojinn_global_5"), ge(6, "__gojinn_global_6"), ge(7, "__gojinn_global_7"),
		},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			if got := mod.ExportedGlobal("__gojinn_global_4").Get(); got != 0x0707070707070707 {
				t.Errorf("v128 low half = %#x", got)
			}
		},
	}, {
		name:     "extended constant expressions",
		features: api.CoreFeaturesV2 | experimental.CoreFeaturesExtendedConst,
		wasm: wasmModule(sec(6, vec(
			global(i32, constant, i32c(6)),
			// wazero v1.12 only lets global.get name imported globals here.
			global(i32, mutable, i32c(6), i32c(7), 0x6c),
			global(i64, mutable, i64c(1), i64c(2), 0x7c, i64c(1), 0x7d, i64c(3), 0x7e),
			global(i32, mutable, i32c(5), i32c(2), 0x6b, i32c(1), 0x6a),
		))),
		want: []GlobalExport{ge(1, "__gojinn_global_1"), ge(2, "__gojinn_global_2"), ge(3, "__gojinn_global_3")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			for name, want := range map[string]uint64{"__gojinn_global_1": 42, "__gojinn_global_2": 6, "__gojinn_global_3": 4} {
				if got := mod.ExportedGlobal(name).Get(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		},
	}, {
		name: "padded LEB128 sizes and counts",
		wasm: wasmModule(
			sec(1, vec(tRetI32)), sec(3, vec(uleb(0))),
			cat(6, paddedLEB(uint32(len(globalsPayload))), globalsPayload),
			cat(7, paddedLEB(uint32(len(exportsPayload))), exportsPayload),
			sec(10, vec(body(globalGet(0)))),
		),
		want: []GlobalExport{ge(0, "__gojinn_global_0")},
		check: func(t *testing.T, ctx context.Context, mod api.Module) {
			mod.ExportedGlobal("__gojinn_global_0").(api.MutableGlobal).Set(5)
			if got := call(t, ctx, mod, "get"); got != 5 {
				t.Errorf("get() = %d, want 5", got)
			}
		},
	}, {
		name:      "every import kind (parse only)",
		parseOnly: true,
		wasm: wasmModule(
			sec(1, vec(tVoid)),
			sec(2, vec(
				imp("m", "f", 0, uleb(0)),
				imp("m", "t", 1, fref, 0x00, uleb(1)),
				imp("m", "t64", 1, xref, 0x05, uleb(1), uleb(1<<40)),
				imp("m", "m0", 2, 0x00, uleb(1)),
				imp("m", "m1", 2, 0x01, uleb(1), uleb(2)),
				imp("m", "m2", 2, 0x02, uleb(1)),
				imp("m", "m3", 2, 0x03, uleb(1), uleb(4)),
				imp("m", "m4", 2, 0x04, uleb(1<<40)),
				imp("m", "m5", 2, 0x07, uleb(1), uleb(math.MaxUint64)),
				imp("m", "g0", 3, i32, mutable),
				imp("m", "g1", 3, xref, constant),
				imp("m", "e", 4, 0x00, uleb(0)),
			)),
			sec(6, vec(global(i32, mutable, i32c(1)), global(v128, constant, 0xfd, 0x0c, zeros16), global(f32, mutable, 0x43, zeros16[:4]))),
		),
		want: []GlobalExport{ge(2, "__gojinn_global_2"), ge(4, "__gojinn_global_4")},
	}}
}

func TestExportMutableGlobals(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.wasm)
			out, got, err := ExportMutableGlobals(in)
			if err != nil {
				t.Fatalf("ExportMutableGlobals: %v", err)
			}
			if !bytes.Equal(in, tc.wasm) {
				t.Fatal("input was modified")
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("exports = %v, want %v", got, tc.want)
			}
			if tc.same != bytes.Equal(out, in) {
				t.Errorf("output equals input: %v, want %v", bytes.Equal(out, in), tc.same)
			}
			if len(out) > 0 && len(in) > 0 && &out[0] == &in[0] {
				t.Error("output aliases the input")
			}
			checkReparse(t, in, out, got)
			if !tc.parseOnly {
				runInWazero(t, tc, out, got)
			}
		})
	}
}

// checkReparse checks that the output is a fixed point with at least as many
// exports as the input.
func checkReparse(t *testing.T, in, out []byte, want []GlobalExport) {
	t.Helper()
	out2, got2, err := ExportMutableGlobals(out)
	if err != nil {
		t.Fatalf("output rejected: %v", err)
	}
	if !bytes.Equal(out2, out) || !reflect.DeepEqual(got2, want) {
		t.Errorf("second pass changed the module or exports: %v", got2)
	}
	mi, _ := parse(in)
	mo, _ := parse(out)
	if mo.exportCount < mi.exportCount {
		t.Errorf("export count went from %d to %d", mi.exportCount, mo.exportCount)
	}
}

// runInWazero compiles and instantiates the output, then round-trips every
// exported mutable global through Set and Get.
func runInWazero(t *testing.T, tc validCase, out []byte, exports []GlobalExport) {
	t.Helper()
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfig()
	if tc.features != 0 {
		cfg = cfg.WithCoreFeatures(tc.features)
	}
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer r.Close(ctx)
	if tc.env != nil {
		if _, err := r.InstantiateWithConfig(ctx, tc.env, wazero.NewModuleConfig().WithName("env")); err != nil {
			t.Fatalf("instantiate env: %v", err)
		}
	}
	compiled, err := r.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("wazero rejected the output: %v", err)
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	if tc.check != nil {
		tc.check(t, ctx, mod)
	}
	for _, e := range exports {
		g, ok := mod.ExportedGlobal(e.Name).(api.MutableGlobal)
		if !ok {
			t.Errorf("%s: not an exported mutable global", e.Name)
			continue
		}
		orig, next := g.Get(), g.Get()^0x5a5a5a5a5a5a5a5a
		switch g.Type() {
		case api.ValueTypeI32, api.ValueTypeF32:
			next &= math.MaxUint32
		case api.ValueTypeExternref, 0x70: // references are opaque
			next = orig
		}
		g.Set(next)
		if got := g.Get(); got != next {
			t.Errorf("%s: Set(%#x) then Get() = %#x", e.Name, next, got)
		}
		g.Set(orig)
	}
}

// call invokes an exported function without arguments and returns its
// first result.
func call(t *testing.T, ctx context.Context, mod api.Module, name string) uint64 {
	t.Helper()
	res, err := mod.ExportedFunction(name).Call(ctx)
	if err != nil || len(res) != 1 {
		t.Fatalf("%s() = %v, %v", name, res, err)
	}
	return res[0]
}

// sectionIDs lists the section ids of a well-formed module.
func sectionIDs(t *testing.T, wasm []byte) []byte {
	t.Helper()
	r := &reader{buf: wasm, pos: 8}
	var ids []byte
	for r.remaining() > 0 {
		id, _ := r.byte("id")
		n, err := r.u32("size")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		r.pos += int(n)
	}
	return ids
}

func TestExportSectionInsertion(t *testing.T) {
	in := noExportModule()
	out, _, err := ExportMutableGlobals(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sectionIDs(t, out), []byte{0, 1, 0, 3, 6, 7, 0, 8, 10, 0}; !bytes.Equal(got, want) {
		t.Fatalf("section ids = %v, want %v", got, want)
	}
	newSec := sec(7, vec(export("__gojinn_global_0", 3, 0), export("__gojinn_global_1", 3, 1)))
	at := bytes.Index(out, newSec)
	if at < 0 {
		t.Fatalf("export section %x not found in %x", newSec, out)
	}
	if rest := cat(out[:at], out[at+len(newSec):]); !bytes.Equal(rest, in) {
		t.Errorf("removing the new export section does not give back the input")
	}
	if !bytes.Contains(out[at+len(newSec):], custom("after-global", "ccc")) {
		t.Errorf("custom section after the global section moved")
	}
}

func TestExistingExportSectionRewritten(t *testing.T) {
	in := counterModule()
	out, _, err := ExportMutableGlobals(in)
	if err != nil {
		t.Fatal(err)
	}
	oldSec := sec(7, vec(export("inc", 0, 0), export("mem", 2, 0)))
	newSec := sec(7, vec(export("inc", 0, 0), export("mem", 2, 0), export("__gojinn_global_0", 3, 0), export("__gojinn_global_2", 3, 2)))
	if want := bytes.Replace(in, oldSec, newSec, 1); !bytes.Equal(out, want) {
		t.Errorf("output\n%x\nwant\n%x", out, want)
	}
}
