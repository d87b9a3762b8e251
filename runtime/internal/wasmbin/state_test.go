package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// stateOps are the instructions FindStateWrite looks for, each as a
// valid statement of a () -> () body of stateModule.
var stateOps = []struct {
	name  string
	instr []byte
}{
	{"table.set", cat(i32c(0), 0xd0, fref, 0x26, 0)},
	{"table.grow", cat(0xd0, fref, i32c(1), 0xfc, 15, 0, 0x1a)},
	{"table.fill", cat(i32c(0), 0xd0, fref, i32c(1), 0xfc, 17, 0)},
	{"table.copy", cat(i32c(0), i32c(1), i32c(1), 0xfc, 14, 0, 0)},
	{"table.init", cat(i32c(0), i32c(0), i32c(1), 0xfc, 12, 0, 0)},
	{"elem.drop", cat(0xfc, 13, 0)},
	{"data.drop", cat(0xfc, 9, 0)},
}

// stateModule is a module whose function 0 is imported and whose
// defined functions, all () -> (), are 1 (start, the start function
// when start is set), 2 (init, exported as "_initialize") and 3 (handle,
// exported as "handle"). It has a table of 2 funcrefs, a passive element
// segment holding function 3 and a passive data segment, so that every
// stateOps statement validates in any of the bodies.
type stateModule struct {
	start               bool
	startBody, initBody []byte
	handleBody          []byte
	exports             [][]byte // more exports
	globals             [][]byte
	elems               [][]byte // more element segments
}

func (s stateModule) build() []byte {
	exports := append([][]byte{export("_initialize", 0, 2), export("handle", 0, 3)}, s.exports...)
	elems := append([][]byte{cat(0x01, 0x00, vec(uleb(3)))}, s.elems...)
	sections := [][]byte{
		sec(1, vec(functype(nil, nil))),
		sec(2, vec(imp("env", "f", 0x00, 0x00))),
		sec(3, vec([]byte{0}, []byte{0}, []byte{0})),
		sec(4, vec(cat(fref, 0x00, 2))),
		sec(5, vec(cat(0x00, 1))),
	}
	if len(s.globals) > 0 {
		sections = append(sections, sec(6, vec(s.globals...)))
	}
	sections = append(sections, sec(7, vec(exports...)))
	if s.start {
		sections = append(sections, sec(8, uleb(1)))
	}
	sections = append(sections,
		sec(9, vec(elems...)),
		sec(12, uleb(1)),
		sec(10, vec(body(s.startBody), body(s.initBody), body(s.handleBody))),
		sec(11, vec(cat(0x01, str("x")))),
	)
	return wasmModule(sections...)
}

// hiddenLoop is a statement that InstrumentLoops refuses to decode
// (ErrUnsupportedInstruction): a typed select of (ref null 0), whose
// heap type wazero's compiler would read as an instruction.
var hiddenLoop = cat(i32c(5), i32c(1), i32c(2), i32c(1), 0x1c, 0x01, 0x63, 0x00, 0x1a)

func TestFindStateWrite(t *testing.T) {
	type want struct {
		fn        uint32
		export    string
		instr     string
		undecoded bool
	}
	type tc struct {
		name string
		mod  stateModule
		want *want // nil: no write found
		// invalid: wazero does not compile the module (tests that it
		// compiles the others keep the cases realistic).
		invalid bool
	}
	var cases []tc
	for _, op := range stateOps {
		cases = append(cases,
			tc{"handle " + op.name, stateModule{handleBody: op.instr}, &want{3, "handle", op.name, false}, false},
			tc{"start " + op.name, stateModule{start: true, startBody: op.instr}, nil, false},
			tc{"_initialize " + op.name, stateModule{initBody: op.instr}, nil, false},
			// Without a start section, function 1 is an ordinary
			// function, unexported and never called: it counts.
			tc{"not start " + op.name, stateModule{startBody: op.instr}, &want{1, "", op.name, false}, false},
		)
	}
	set := stateOps[0].instr
	cases = append(cases,
		tc{"none", stateModule{start: true}, nil, false},
		tc{"first write in code order", stateModule{startBody: cat(stateOps[6].instr), handleBody: set}, &want{1, "", "data.drop", false}, false},
		tc{"first write in a body", stateModule{handleBody: cat(stateOps[5].instr, set)}, &want{3, "handle", "elem.drop", false}, false},
		tc{"start and handle", stateModule{start: true, startBody: set, handleBody: stateOps[1].instr}, &want{3, "handle", "table.grow", false}, false},
		tc{"_initialize exported again", stateModule{initBody: set, exports: [][]byte{export("other", 0, 2)}}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize called", stateModule{initBody: set, handleBody: cat(0x10, 2)}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize tail-called", stateModule{initBody: set, handleBody: cat(0x12, 2)}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize called by itself", stateModule{initBody: cat(set, 0x10, 2)}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize ref.func in code", stateModule{initBody: set, handleBody: cat(0xd2, 2, 0x1a)}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize in an active element segment", stateModule{initBody: set, elems: [][]byte{cat(0x00, i32c(0), opEnd, vec(uleb(2)))}}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize in an element expression", stateModule{initBody: set, elems: [][]byte{cat(0x05, fref, vec(cat(0xd2, 2, opEnd)))}}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize in a declarative segment", stateModule{initBody: set, elems: [][]byte{cat(0x03, 0x00, vec(uleb(2)))}}, &want{2, "_initialize", "table.set", false}, false},
		tc{"_initialize in a global", stateModule{initBody: set, globals: [][]byte{global(fref, constant, 0xd2, 2)}}, &want{2, "_initialize", "table.set", false}, false},
		tc{"other functions referenced", stateModule{initBody: set, handleBody: cat(0x10, 0, 0x10, 1), elems: [][]byte{cat(0x00, i32c(0), opEnd, vec(uleb(3)))}, globals: [][]byte{global(fref, constant, 0xd2, 1)}}, nil, false},
		tc{"start exported", stateModule{start: true, startBody: set, exports: [][]byte{export("s", 0, 1)}}, &want{1, "s", "table.set", false}, false},
		tc{"start called", stateModule{start: true, startBody: set, handleBody: cat(0x10, 1)}, &want{1, "", "table.set", false}, false},
		tc{"start in an element segment", stateModule{start: true, startBody: set, elems: [][]byte{cat(0x00, i32c(0), opEnd, vec(uleb(1)))}}, &want{1, "", "table.set", false}, false},
		tc{"start called by _initialize", stateModule{start: true, startBody: set, initBody: cat(0x10, 1)}, &want{1, "", "table.set", false}, false},
		// wazero reads the 0xfc sub-opcode as a LEB128, non-minimal too.
		tc{"non-minimal sub-opcode", stateModule{handleBody: cat(0xd0, fref, i32c(1), 0xfc, 0x8f, 0x00, 0, 0x1a)}, &want{3, "handle", "table.grow", false}, false},
		// A body that does not decode exactly: its bytes count. (wazero
		// rejects these modules: the typed select has i32 operands.)
		tc{"undecoded body without writes", stateModule{handleBody: hiddenLoop}, nil, true},
		tc{"undecoded body with a write", stateModule{handleBody: cat(hiddenLoop, set)}, &want{3, "handle", "table.set", true}, true},
		tc{"undecoded immediate", stateModule{handleBody: cat(hiddenLoop, i32c(0x26), 0x1a)}, &want{3, "handle", "table.set", true}, true},
		tc{"undecoded body hides calls", stateModule{initBody: set, handleBody: hiddenLoop}, &want{2, "_initialize", "table.set", false}, true},
	)

	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
	t.Cleanup(func() { r.Close(ctx) })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wasm := c.mod.build()
			if cm, err := r.CompileModule(ctx, wasm); err != nil && !c.invalid {
				t.Fatalf("wazero does not compile the test module: %v", err)
			} else if err == nil {
				cm.Close(ctx)
			}
			in := bytes.Clone(wasm)
			got, err := FindStateWrite(wasm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, wasm) {
				t.Fatal("input was modified")
			}
			switch {
			case c.want == nil && got != nil:
				t.Fatalf("found %+v, want none", *got)
			case c.want == nil:
				return
			case got == nil:
				t.Fatalf("found none, want %+v", *c.want)
			}
			if g := (want{got.Func, got.Export, got.Instr, got.Undecoded}); g != *c.want {
				t.Fatalf("found %+v, want %+v", g, *c.want)
			}
			if op := wasm[got.Offset]; (got.Instr == "table.set") != (op == 0x26) || (op != 0x26 && op != 0xfc) {
				t.Fatalf("offset %d holds 0x%02x, not the start of %s", got.Offset, op, got.Instr)
			}
		})
	}
}

// FindStateWrite reports undecodable input as InstrumentLoops would, and
// names the function.
func TestFindStateWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		want error
	}{
		{"truncated body", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec([]byte{0})), sec(10, vec(cat(3, 0, 0x41, 0)))), ErrMalformed},
		{"bad start section", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec([]byte{0})), sec(8, 0x80), sec(10, vec(body()))), ErrMalformed},
		{"bad element section", stateModule{initBody: stateOps[0].instr, elems: [][]byte{cat(0x09)}}.build(), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := FindStateWrite(tc.wasm)
			if !errors.Is(err, tc.want) || w != nil {
				t.Fatalf("got %+v, %v; want %v", w, err, tc.want)
			}
		})
	}
	if w, err := FindStateWrite(wasmModule()); w != nil || err != nil {
		t.Fatalf("empty module: %+v, %v", w, err)
	}
}

// Go's wasm backend and runtime never write tables or drop segments: a
// Go reactor can be reset.
func TestFindStateWriteGoGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go guest")
	}
	w, err := FindStateWrite(buildGoGuest(t))
	if err != nil || w != nil {
		t.Fatalf("got %+v, %v; want no write", w, err)
	}
}

func FuzzFindStateWrite(f *testing.F) {
	for _, op := range stateOps {
		f.Add(stateModule{handleBody: op.instr}.build())
		f.Add(stateModule{start: true, startBody: op.instr, initBody: op.instr, handleBody: cat(0x10, 2)}.build())
	}
	f.Add(stateModule{handleBody: cat(hiddenLoop, i32c(0x26), 0x1a)}.build())
	f.Add(stateModule{initBody: stateOps[0].instr, elems: [][]byte{cat(0x05, fref, vec(cat(0xd2, 2, opEnd)))}, globals: [][]byte{global(fref, constant, 0xd2, 2)}}.build())
	for _, tc := range validCases() {
		f.Add(tc.wasm)
	}
	sentinels := []error{ErrMalformed, ErrTooLarge, ErrUnsupportedInstruction, ErrLimit}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		in := bytes.Clone(wasm)
		w, err := FindStateWrite(wasm)
		if !bytes.Equal(in, wasm) {
			t.Fatal("input was modified")
		}
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || w != nil {
				t.Fatalf("got %+v and error %v wrapping %d sentinels, want none and 1", w, err, n)
			}
			return
		}
		if w == nil {
			return
		}
		if w.Offset < 8 || w.Offset >= len(wasm) {
			t.Fatalf("offset %d outside the module (%d bytes)", w.Offset, len(wasm))
		}
		if op := wasm[w.Offset]; (w.Instr == "table.set") != (op == 0x26) || (op != 0x26 && op != 0xfc) {
			t.Fatalf("offset %d holds 0x%02x, not the start of %s", w.Offset, op, w.Instr)
		}
		w2, err := FindStateWrite(wasm)
		if err != nil || *w2 != *w {
			t.Fatalf("second call: %+v, %v; first %+v", w2, err, w)
		}
	})
}
