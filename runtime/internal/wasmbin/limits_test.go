package wasmbin

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// maxU32 is the largest count a LEB128 u32 can declare.
const maxU32 = math.MaxUint32

// i32s returns n i32 value types.
func i32s(n int) []byte { return bytes.Repeat([]byte{i32}, n) }

// nameSec encodes a "name" custom section with the given subsections.
func nameSec(subs ...[]byte) []byte { return sec(0, str("name"), cat(anys(subs)...)) }

// nameSub encodes a name subsection.
func nameSub(id byte, parts ...any) []byte {
	p := cat(parts...)
	return cat(id, uleb(uint64(len(p))), p)
}

// codeSec encodes a code section of raw bodies (size-prefixed by codeBody).
func codeBody(b ...any) []byte {
	p := cat(b...)
	return cat(uleb(uint64(len(p))), p)
}

// oneFunc wraps a function body (locals and code, without its size) into a
// module with one function of type t.
func oneFunc(t []byte, bodyContents ...any) []byte {
	return wasmModule(sec(1, vec(t)), sec(3, vec([]byte{0})), sec(10, vec(codeBody(bodyContents...))))
}

// manyFuncs returns a module with n functions of type t, each with the
// given body contents.
func manyFuncs(n int, t []byte, bodyContents ...any) []byte {
	fs := make([][]byte, n)
	bodies := make([][]byte, n)
	for i := range fs {
		fs[i] = []byte{0}
		bodies[i] = codeBody(bodyContents...)
	}
	return wasmModule(sec(1, vec(t)), sec(3, vec(fs...)), sec(10, vec(bodies...)))
}

// resultsFunc is a module whose function 0 returns k i32s (by trapping) and
// whose function 1 (no parameters or results) runs code.
func resultsFunc(k int, code ...any) []byte {
	return wasmModule(
		sec(1, vec(functype(nil, i32s(k)), functype(nil, nil))),
		sec(3, vec([]byte{0}, []byte{1})),
		sec(10, vec(body(0x00), codeBody(0x00, cat(code...), opEnd))),
	)
}

type hostileCase struct {
	name string
	wasm []byte
	want error  // ErrLimit or ErrMalformed
	msg  string // part of the error message
}

// hostileCases are small modules, each declaring a count or size that makes
// wazero v1.12 allocate out of proportion to the module (most of them kill
// the process with a fatal out of memory error), one per allocation site.
func hostileCases() []hostileCase {
	hdr := "\x00asm\x01\x00\x00\x00"
	big := uleb(maxU32)
	tVoid := functype(nil, nil)
	return []hostileCase{
		// Section framing: wazero allocates a custom section's declared
		// size (when it keeps custom sections, as for DWARF, the default)
		// and a custom section name's declared length before reading them.
		{"custom section size", cat(hdr, 0, big, str("x")), ErrMalformed, "section 0 size"},
		{"custom section name length", cat(hdr, 0, 5, big), ErrMalformed, "custom section name"},
		{"vector running past its section", wasmModule(sec(3, 1, 0x80), sec(10, vec())), ErrMalformed, "function type index"},

		// Type section: the vector of types, rec groups and the
		// parameter and result vectors (decodeValueTypes preallocates).
		{"type count", wasmModule(sec(1, big)), ErrMalformed, "type count"},
		{"rec group type count", wasmModule(sec(1, 1, 0x4e, big)), ErrMalformed, "rec group type count"},
		{"parameter count", wasmModule(sec(1, 1, 0x60, big)), ErrMalformed, "parameter count"},
		{"result count", wasmModule(sec(1, 1, 0x60, 0, big)), ErrMalformed, "result count"},
		{"1001 parameters", wasmModule(sec(1, vec(functype(i32s(1001), nil)))), ErrLimit, "parameter count 1001"},
		{"1001 results", wasmModule(sec(1, vec(functype(nil, i32s(1001))))), ErrLimit, "result count 1001"},

		// Import section: the import vector and every name.
		{"import count", wasmModule(sec(2, big)), ErrMalformed, "import count"},
		{"import module name length", wasmModule(sec(2, 1, big)), ErrMalformed, "import module name"},
		{"import name length", wasmModule(sec(2, 1, str("m"), big)), ErrMalformed, "import name"},
		{"imported table size", wasmModule(sec(2, vec(imp("m", "t", 1, fref, 0x00, uleb(1<<27))))), ErrLimit, "table minimum size"},

		// Function, table, memory, tag, global and export sections.
		{"function count", wasmModule(sec(1, vec(tVoid)), sec(3, big)), ErrMalformed, "function count"},
		{"table count", wasmModule(sec(4, big)), ErrMalformed, "table count"},
		{"table size", wasmModule(sec(4, vec(cat(fref, 0x00, uleb(1<<27))))), ErrLimit, "table minimum size"},
		{"table sizes in all", wasmModule(sec(4, vec(cat(fref, 0x00, uleb(6e6)), cat(xref, 0x00, uleb(6e6))))), ErrLimit, "in all"},
		{"memory count", wasmModule(sec(5, big)), ErrMalformed, "memories"},
		{"tag count", wasmModule(sec(13, big)), ErrMalformed, "tag count"},
		{"global count", wasmModule(sec(6, big)), ErrMalformed, "global count"},
		{"export count", wasmModule(sec(7, big)), ErrMalformed, "export count"},
		{"export name length", wasmModule(sec(7, 1, big)), ErrMalformed, "export name"},

		// Element section: the segment vector and both kinds of
		// initializer vector.
		{"element segment count", wasmModule(sec(9, big)), ErrMalformed, "element segment count"},
		{"element function index count", wasmModule(sec(9, 1, 0x00, i32c(0), opEnd, big)), ErrMalformed, "element count"},
		{"element expression count", wasmModule(sec(9, 1, 0x05, fref, big)), ErrMalformed, "element count"},
		{"element function index", wasmModule(sec(9, vec(cat(0x01, 0x00, vec(uleb(1<<27)))))), ErrLimit, "function index"},

		// Code section: the body vector, each body (copied at its
		// declared size), the local declarations and the local types,
		// which wazero allocates at their total declared count.
		{"function body count", wasmModule(sec(1, vec(tVoid)), sec(3, vec([]byte{0})), sec(10, big)), ErrMalformed, "function body count"},
		{"function body size", wasmModule(sec(1, vec(tVoid)), sec(3, vec([]byte{0})), sec(10, 1, big, 0, opEnd)), ErrMalformed, "function body 0 size"},
		{"local declaration count", oneFunc(tVoid, big, opEnd), ErrMalformed, "local declaration count"},
		{"2^32-1 locals", oneFunc(tVoid, 1, big, i32, opEnd), ErrLimit, "parameters and locals"},
		{"2 x 2^31 locals", oneFunc(tVoid, 2, uleb(1<<31), i32, uleb(1<<31), i64, opEnd), ErrLimit, "parameters and locals"},
		{"50,001 locals", oneFunc(tVoid, 1, uleb(50_001), i32, opEnd), ErrLimit, "parameters and locals"},
		{"1,000 parameters and 49,001 locals", oneFunc(functype(i32s(1000), nil), 1, uleb(49_001), i32, opEnd), ErrLimit, "parameters and locals"},
		{"50,000 locals in each of 100 functions", manyFuncs(100, tVoid, 1, uleb(50_000), i32, opEnd), ErrLimit, "value slots"},
		{"1,000 parameters in each of 300 functions", manyFuncs(300, functype(i32s(1000), nil), 0, opEnd), ErrLimit, "value slots"},

		// Multi-value types: every call of a function with 1,000 results
		// (2 bytes) makes wazero allocate for 1,000 values; branches to a
		// label with 1,000 results likewise.
		{"calls returning 1,000 values", resultsFunc(1000, bytes.Repeat([]byte{0x10, 0x00}, 200), 0x00), ErrLimit, "value slots"},
		{"blocks with 1,000 results", resultsFunc(1000, bytes.Repeat([]byte{0x02, 0x00, 0x00, opEnd}, 100), 0x00), ErrLimit, "value slots"},
		{"br_if to a label with 1,000 results", resultsFunc(1000, 0x02, 0x00, 0x10, 0x00, bytes.Repeat([]byte{0x41, 0x00, 0x0d, 0x00}, 100), opEnd, 0x00), ErrLimit, "value slots"},
		{"br_table to a label with 1,000 results", resultsFunc(1000, 0x02, 0x00, 0x10, 0x00, 0x41, 0x00, 0x0e, uleb(200), make([]byte, 201), opEnd, 0x00), ErrLimit, "value slots"},
		// A GC opcode wazero rejects, but only after its validator has
		// gone through the calls before it: the instructions are not
		// decoded, so every byte that could start a call is charged.
		{"calls before an unknown opcode", resultsFunc(1000, bytes.Repeat([]byte{0x10, 0x00}, 200), 0xfb, 0x00), ErrLimit, "value slots"},

		// Data section: the segment vector and each segment's contents;
		// the data count must match.
		{"data segment count", cat(hdr, sec(11, big)), ErrMalformed, "data segment count"},
		{"data segment size", wasmModule(sec(11, 1, 0x01, big)), ErrMalformed, "data segment"},
		{"data count mismatch", wasmModule(sec(12, big)), ErrMalformed, "data count section"},

		// The name section: the module name, the function name map, the
		// local name map and each of its inner maps.
		{"module name length", cat(hdr, nameSec(nameSub(0, big))), ErrMalformed, "module name"},
		{"function name count", cat(hdr, nameSec(nameSub(1, big))), ErrMalformed, "function name count"},
		{"function name length", cat(hdr, nameSec(nameSub(1, 1, 0, big))), ErrMalformed, "name"},
		{"local name function count", cat(hdr, nameSec(nameSub(2, big))), ErrMalformed, "local name function count"},
		{"local name count", cat(hdr, nameSec(nameSub(2, 1, 0, big))), ErrMalformed, "local name count"},
		// wazero decodes a known subsection without bounding it by its
		// size, then subtracts the size from what is left: a subsection
		// longer than its contents makes it decode the rest (here a
		// function name count of 2^32-1) as further subsections, and one
		// longer than the section makes that count underflow.
		{"name subsection longer than its contents", cat(hdr, nameSec(nameSub(1, 0, cat(1, 5, big)), nameSub(9))), ErrMalformed, "trailing bytes"},
		{"name subsection longer than the section", cat(hdr, nameSec(cat(1, uleb(1000), 0, 1, 5, big))), ErrMalformed, "exceeds"},
		// wazero compares the decoded custom section name, so a padded
		// length still names the name section.
		{"name section with a padded name length", cat(hdr, sec(0, 0x84, 0x00, "name", nameSub(1, big))), ErrMalformed, "function name count"},
	}
}

func TestCheckLimitsRejectsHostileModules(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.wasm)
			err := CheckLimits(tc.wasm)
			if !bytes.Equal(in, tc.wasm) {
				t.Fatal("input was modified")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v (module %d bytes: %x)", err, tc.want, len(tc.wasm), trim(tc.wasm))
			}
			if errors.Is(err, ErrLimit) && errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v wraps both sentinels", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.msg) || !strings.Contains(msg, "byte offset") {
				t.Errorf("err = %q, want it to mention %q and the byte offset", msg, tc.msg)
			}
		})
	}
}

// trim shortens a module for an error message.
func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TestCheckLimitsJSAPILimits checks the counts that fit in their section
// but exceed the JavaScript API's implementation limits.
func TestCheckLimitsJSAPILimits(t *testing.T) {
	tVoid := functype(nil, nil)
	many := func(n int, entry []byte) []byte { return cat(uleb(uint64(n)), bytes.Repeat(entry, n)) }
	for _, tc := range []struct {
		name, msg string
		wasm      []byte
	}{
		{"1,000,001 functions", "function count 1000001", wasmModule(sec(1, vec(tVoid)), sec(3, many(1_000_001, []byte{0})))},
		{"100,001 imports", "import count 100001", wasmModule(sec(1, vec(tVoid)), sec(2, many(100_001, imp("", "", 0, 0))))},
		{"100,001 exports", "export count 100001", wasmModule(sec(7, many(100_001, export("", 0, 0))))},
		{"100,001 data segments", "data segment count 100001", wasmModule(sec(11, many(100_001, []byte{0x01, 0x00})))},
		{"1,000,001 globals", "global count 1000001", wasmModule(sec(6, many(1_000_001, global(i32, constant, i32c(0)))))},
		{"function body of 7,654,322 bytes", "function body 0 size", oneFunc(tVoid, 0, make([]byte, 7_654_320), opEnd)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLimits(tc.wasm)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrLimit mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestCheckLimitsAcceptsLargeButProportionalModules checks modules near the
// limits that must pass.
func TestCheckLimitsAcceptsLargeButProportionalModules(t *testing.T) {
	tVoid := functype(nil, nil)
	for _, tc := range []struct {
		name string
		wasm []byte
	}{
		{"50,000 locals", oneFunc(tVoid, 1, uleb(50_000), i32, opEnd)},
		{"1,000 parameters and 49,000 locals", oneFunc(functype(i32s(1000), nil), 1, uleb(49_000), i32, opEnd)},
		{"1,000 parameters and 1,000 results", wasmModule(sec(1, vec(functype(i32s(1000), i32s(1000)))))},
		{"a few calls returning 1,000 values", resultsFunc(1000, bytes.Repeat([]byte{0x10, 0x00}, 20), 0x00)},
		{"a table of 10,000,000 entries", wasmModule(sec(4, vec(cat(fref, 0x00, uleb(10_000_000)))))},
		{"empty rec group", wasmModule(sec(1, vec(cat(0x4e, 0x00))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckLimits(tc.wasm); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// validModules returns the package's own test modules, which wazero
// compiles.
func validModules() map[string][]byte {
	mods := map[string][]byte{"spin": spinModule(), "empty": wasmModule()}
	for _, tc := range validCases() {
		if !tc.parseOnly {
			mods["valid/"+tc.name] = tc.wasm
		}
		if tc.env != nil {
			mods["valid/"+tc.name+"/env"] = tc.env
		}
	}
	for _, tc := range loopCases() {
		mods["loop/"+tc.name] = tc.build(&mb{})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		data := make([]byte, 64+rng.IntN(1024))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		plain, _ := generate(data)
		mods["generated/"+string(rune('a'+i))] = plain
	}
	return mods
}

func TestCheckLimitsAcceptsValidModules(t *testing.T) {
	for name, wasm := range validModules() {
		t.Run(name, func(t *testing.T) {
			if err := CheckLimits(wasm); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckLimitsDecodesGeneratedBodies checks that the instruction decoder
// accounts for every body of the generated modules (which use every
// instruction kind) without falling back to the coarse bound.
func TestCheckLimitsDecodesGeneratedBodies(t *testing.T) {
	for name, wasm := range validModules() {
		if !strings.HasPrefix(name, "generated/") {
			continue
		}
		c := &limitChecker{wasm: wasm, dataCount: -1, slotLimit: math.MaxUint64}
		if err := c.check(); err != nil {
			t.Fatal(err)
		}
		m, err := parse(wasm)
		if err != nil {
			t.Fatal(err)
		}
		r := &reader{buf: wasm[m.codeBody:m.codeEnd], base: m.codeBody}
		n, _ := r.u32("count")
		for i := uint32(0); i < n; i++ {
			size, _ := r.u32("size")
			body := &reader{buf: r.buf[r.pos : r.pos+int(size)], base: r.off()}
			r.pos += int(size)
			decls, _ := body.u32("decls")
			for j := uint32(0); j < decls; j++ {
				body.u32("count")
				body.wazeroValType("type")
			}
			if _, ok := c.bodySlots(body, c.types[c.funcTypes[i]]); !ok {
				t.Fatalf("%s: body %d not decoded: % x", name, i, body.buf)
			}
		}
	}
}

// TestCheckLimitsSlots checks the slot accounting of single instructions.
func TestCheckLimitsSlots(t *testing.T) {
	c := &limitChecker{
		types:     []arity{{0, 0}, {2, 3}, {0, 7}},
		funcTypes: []uint32{1, 2},
		tagTypes:  []uint32{1},
	}
	for _, tc := range []struct {
		name string
		code []byte
		want uint64
	}{
		{"empty", cat(opEnd), 1},                                                 // the function's end: 1 result
		{"call", cat(0x10, 0x00, opEnd), 5 + 1},                                  // 2+3
		{"call_indirect", cat(0x11, 0x02, 0x00, opEnd), 7 + 1},                   // type 2
		{"block type 1", cat(0x02, 0x01, opEnd, opEnd), 5 + 3 + 1},               // open, end
		{"loop label", cat(0x03, 0x01, 0x0c, 0x00, opEnd, opEnd), 5 + 2 + 3 + 1}, // br to a loop carries params
		{"if else", cat(0x04, 0x01, 0x05, opEnd, opEnd), 5 + 5 + 3 + 1},          // else carries params and results
		{"br_table", cat(0x02, 0x02, 0x0e, 0x02, 0x00, 0x01, 0x00, opEnd, opEnd), 7 + (7 + 1 + 7) + 7 + 1},
		{"return", cat(0x0f, opEnd), 1 + 1},
		{"throw", cat(0x08, 0x00, opEnd), 2 + 1},
		{"inline block type", cat(0x02, i32, 0x41, 0x00, opEnd, opEnd), 1 + 1 + 1},
	} {
		got, ok := c.bodySlots(&reader{buf: tc.code}, arity{0, 1})
		if !ok || got != tc.want {
			t.Errorf("%s: %d, %v, want %d", tc.name, got, ok, tc.want)
		}
	}
	// Bodies that do not decode: an unknown opcode, a label out of range,
	// a function index out of range, a truncated immediate.
	for _, code := range [][]byte{{0xfb, 0x00, opEnd}, {0x0c, 0x05, opEnd}, {0x10, 0x09, opEnd}, {0x41}} {
		if _, ok := c.bodySlots(&reader{buf: code}, arity{}); ok {
			t.Errorf("% x decoded", code)
		}
	}
	// The coarse bound charges every byte offset.
	if got := c.coarseSlots([]byte{0x10, 0x10, 0x00}); got != 2+3 {
		t.Errorf("coarse call bound %d, want 5 (the first 0x10 reads index 16)", got)
	}
	if got := c.coarseSlots([]byte{0x41, 0x02, 0x01}); got != 2*2+3*3 {
		t.Errorf("coarse block bound %d, want 13", got)
	}
}

// TestWazeroLEB checks the LEB128 decoders that mirror wazero's.
func TestWazeroLEB(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want uint32
		n    int
		ok   bool
	}{
		{[]byte{0x05}, 5, 1, true},
		{[]byte{0x80, 0x01}, 128, 2, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, maxU32, 5, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 0, 0, false}, // unused bits
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, 0, false},
		{[]byte{0x80}, 0, 0, false},
		{nil, 0, 0, false},
	} {
		v, n, ok := wazeroU32(tc.in)
		if v != tc.want || n != tc.n || ok != tc.ok {
			t.Errorf("wazeroU32(% x) = %d, %d, %v", tc.in, v, n, ok)
		}
	}
	for _, tc := range []struct {
		in   []byte
		want int64
		n    int
		ok   bool
	}{
		{[]byte{0x40}, -64, 1, true},
		{[]byte{0x7f}, -1, 1, true},
		{[]byte{0x05}, 5, 1, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x0f}, 0xf << 28, 5, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, -1 << 32, 5, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80}, 0, 5, true}, // wazero accepts a continuation bit in the 5th byte
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x2f}, 0, 0, false},
		{[]byte{0x80}, 0, 0, false},
	} {
		v, n, ok := wazeroS33(tc.in)
		if v != tc.want || n != tc.n || ok != tc.ok {
			t.Errorf("wazeroS33(% x) = %d, %d, %v, want %d, %d, %v", tc.in, v, n, ok, tc.want, tc.n, tc.ok)
		}
	}
}

// TestCheckLimitsTruncations checks every prefix of the valid modules:
// none may panic, and no strict prefix of a module with sections passes
// unless it ends on a section boundary.
func TestCheckLimitsTruncations(t *testing.T) {
	for name, wasm := range validModules() {
		if len(wasm) > 4096 {
			continue
		}
		for i := 0; i < len(wasm); i++ {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("%s: panic on a %d-byte prefix: %v", name, i, p)
					}
				}()
				_ = CheckLimits(wasm[:i])
			}()
		}
	}
}

func TestCheckLimitsDoesNotAllocateProportionallyToCounts(t *testing.T) {
	for _, tc := range hostileCases() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_ = CheckLimits(tc.wasm)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10+16*uint64(len(tc.wasm)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte module", tc.name, n, len(tc.wasm))
		}
	}
}

// nestedBrIf is a body of n nested blocks, each holding a br_if to the
// outermost: the shape wazero compiles slowest per block (11 s for
// n = 10,000 on a 2.5 GHz Cascade Lake; 100,000 plain nested blocks ran
// for more than 12 minutes).
func nestedBrIf(n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, cat(0x02, 0x40, i32c(0), 0x0d, uleb(uint64(i)))...)
	}
	return append(b, bytes.Repeat([]byte{opEnd}, n)...)
}

// Compile time grows with the square of a function's blocks and branches
// and cannot be interrupted, so CheckLimits bounds them per function and,
// as a sum of squares, per module; a br_table counts once whatever its
// targets (interpreters' dispatch tables compile fast).
func TestCheckLimitsBoundsControlFlow(t *testing.T) {
	tVoid := functype(nil, nil)
	half := maxFunctionControl / 2
	for _, tc := range []struct {
		name, msg string
		wasm      []byte
	}{
		{"100,000 nested blocks", "function body 0 has 100000 blocks and branches, more than the limit of 12000",
			oneFunc(tVoid, 0, bytes.Repeat([]byte{0x02, 0x40}, 100_000), bytes.Repeat([]byte{opEnd}, 100_000), opEnd)},
		{"nested br_if one past the limit", "function body 0 has 12002 blocks and branches",
			oneFunc(tVoid, 0, nestedBrIf(half+1), opEnd)},
		{"flat br_if one past the limit", "function body 0 has 12001 blocks and branches",
			oneFunc(tVoid, 0, 0x02, 0x40, bytes.Repeat(cat(i32c(0), 0x0d, 0x00), maxFunctionControl), opEnd, opEnd)},
		{"eight functions at the limit", "the functions up to body 6 have so many blocks and branches",
			manyFuncs(8, tVoid, 0, nestedBrIf(half), opEnd)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLimits(tc.wasm)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrLimit mentioning %q", err, tc.msg)
			}
		})
	}
	brTable := func(n int) []byte { // n nested blocks and one br_table to each (Go's resume dispatch)
		labels := make([]byte, 0, 3*n)
		for i := 0; i < n; i++ {
			labels = append(labels, uleb(uint64(i))...)
		}
		return cat(bytes.Repeat([]byte{0x02, 0x40}, n), i32c(0), 0x0e, uleb(uint64(n-1)), labels, bytes.Repeat([]byte{opEnd}, n))
	}
	for _, tc := range []struct {
		name string
		wasm []byte
	}{
		{"one function at the limit", oneFunc(tVoid, 0, nestedBrIf(half), opEnd)},
		{"six functions at the limit", manyFuncs(6, tVoid, 0, nestedBrIf(half), opEnd)},
		{"11,999 nested blocks and a br_table to each", oneFunc(tVoid, 0, brTable(maxFunctionControl-1), opEnd)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckLimits(tc.wasm); err != nil {
				t.Fatal(err)
			}
		})
	}
}
