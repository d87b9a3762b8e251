package wasmbin

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestMalformed(t *testing.T) {
	hdr := "\x00asm\x01\x00\x00\x00"
	globals := func(entries ...[]byte) []byte { return wasmModule(sec(6, vec(entries...))) }
	for _, tc := range []struct {
		name, want string
		wasm       []byte
	}{
		{"empty", "magic number", nil},
		{"short header", "magic number", []byte("\x00as")},
		{"bad magic", "bad magic", []byte("\x00ASM\x01\x00\x00\x00")},
		{"missing version", "version", []byte("\x00asm\x01")},
		{"bad version", "unsupported version", []byte("\x00asm\x02\x00\x00\x00")},
		{"truncated section size", "section size", cat(hdr, 1, 0x80)},
		{"section past end", "exceeds", cat(hdr, 1, 10, 0)},
		{"overlong u32", "longer than 5 bytes", cat(hdr, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00)},
		{"u32 overflow", "overflows 32 bits", cat(hdr, 1, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"unknown section", "unknown section id 14", cat(hdr, sec(14))},
		{"out of order", "out of order", wasmModule(sec(6, vec()), sec(2, vec()))},
		{"duplicate section", "duplicated", wasmModule(sec(1, vec()), sec(1, vec()))},
		{"custom name too long", "custom section name", cat(hdr, 0, 2, 5, 'a')},
		{"custom name not UTF-8", "UTF-8", cat(hdr, custom("\xff", ""))},
		{"empty import section", "import count", cat(hdr, sec(2))},
		{"huge import count", "exceeds the", cat(hdr, sec(2, uleb(1<<31)))},
		{"unknown import kind", "unknown import kind 5", wasmModule(sec(2, vec(imp("m", "x", 5))))},
		{"truncated import name", "import name", wasmModule(sec(2, cat(1, str("m"), 9, "ab")))},
		{"bad table type", "table element type", wasmModule(sec(2, vec(imp("m", "t", 1, i32, 0, 1))))},
		{"shared table", "table limits flags", wasmModule(sec(2, vec(imp("m", "t", 1, fref, 0x03, 1, 2))))},
		{"bad memory flags", "memory limits flags 0x08", wasmModule(sec(2, vec(imp("m", "m", 2, 0x08, 1))))},
		{"memory64 overflow", "overflows 64 bits", wasmModule(sec(2, vec(imp("m", "m", 2, 0x04, bytes.Repeat([]byte{0xff}, 9), 0x02))))},
		{"tag attribute", "tag attribute", wasmModule(sec(2, vec(imp("m", "e", 4, 1, 0))))},
		{"bad import global type", "global value type", wasmModule(sec(2, vec(imp("m", "g", 3, 0x40, 0))))},
		{"bad valtype", "global value type 0x40", globals(global(0x40, mutable, i32c(0)))},
		{"bad mutability", "mutability 2", globals(global(i32, 2, i32c(0)))},
		{"huge global count", "global count", cat(hdr, sec(6, uleb(1000)))},
		{"local.get in init", "opcode 0x20", globals(global(i32, mutable, 0x20, 0))},
		{"missing end", "constant expression", cat(hdr, sec(6, 1, i32, mutable, i32c(1)))},
		{"truncated f64", "f64.const", cat(hdr, sec(6, 1, f64, mutable, 0x44, 0, 0))},
		{"SIMD non-const", "SIMD opcode 13", globals(global(v128, mutable, 0xfd, 0x0d, zeros16))},
		{"signed LEB overflow", "signed LEB128 overflows 32 bits", globals(global(i32, mutable, 0x41, 0xff, 0xff, 0xff, 0xff, 0x4f))},
		{"signed LEB overlong", "longer than 10 bytes", globals(global(i64, mutable, 0x42, bytes.Repeat([]byte{0x80}, 10), 0))},
		{"ref.null bad type", "ref.null type", globals(global(fref, mutable, 0xd0, i32))},
		{"trailing bytes", "trailing bytes", wasmModule(sec(6, vec(global(i32, mutable, i32c(0))), 0))},
		{"unknown export kind", "unknown export kind 5", wasmModule(sec(7, vec(export("x", 5, 0))))},
		{"export global out of range", "out of range", wasmModule(sec(6, vec(global(i32, mutable, i32c(0)))), sec(7, vec(export("g", 3, 1))))},
		{"duplicate export name", "duplicate export name", wasmModule(sec(7, vec(export("x", 0, 0), export("x", 2, 0))))},
		{"export name not UTF-8", "UTF-8", wasmModule(sec(7, vec(export("\xc3", 0, 0))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, exps, err := ExportMutableGlobals(tc.wasm)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if out != nil || exps != nil {
				t.Error("non-nil results with an error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, "byte offset") {
				t.Errorf("err = %q, want it to mention %q and the byte offset", msg, tc.want)
			}
		})
	}
}

func TestMalformedOffset(t *testing.T) {
	// The bad mutability byte sits at offset 8 (header) + 2 (section id and
	// size) + 1 (count) + 1 (value type) = 12.
	_, _, err := ExportMutableGlobals(wasmModule(sec(6, vec(global(i32, 9, i32c(0))))))
	if err == nil || !strings.HasSuffix(err.Error(), "at byte offset 12") {
		t.Errorf("err = %v, want offset 12", err)
	}
}

func TestNameConflict(t *testing.T) {
	wasm := wasmModule(
		sec(1, vec(tVoid)), sec(3, vec(uleb(0))),
		sec(6, vec(global(i32, mutable, i32c(0)))),
		sec(7, vec(export("__gojinn_global_0", 0, 0))),
		sec(10, vec(body())),
	)
	if _, _, err := ExportMutableGlobals(wasm); !errors.Is(err, ErrNameConflict) {
		t.Errorf("err = %v, want ErrNameConflict", err)
	}
}

func TestLEB(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		bits   uint
		signed bool
		want   uint64
		ok     bool
	}{
		{[]byte{0x00}, 32, false, 0, true},
		{[]byte{0xe5, 0x8e, 0x26}, 32, false, 624485, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, false, 0xffffffff, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 32, false, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32, false, 0, false},
		{[]byte{0x80, 0x80}, 32, false, 0, false}, // truncated
		{[]byte{0x7f}, 32, true, ^uint64(0), true},
		{[]byte{0xc0, 0xbb, 0x78}, 32, true, uint64(0xffffffff_fffe1dc0), true}, // -123456
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, 32, true, uint64(0xffffffff_80000000), true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x08}, 32, true, 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 32, true, 0x7fffffff, true},
		{append(bytes.Repeat([]byte{0xff}, 9), 0x01), 64, false, ^uint64(0), true},
		{append(bytes.Repeat([]byte{0xff}, 9), 0x03), 64, false, 0, false},
		{append(bytes.Repeat([]byte{0x80}, 9), 0x7f), 64, true, 1 << 63, true},
		{append(bytes.Repeat([]byte{0x80}, 9), 0x01), 64, true, 0, false},
		{append(bytes.Repeat([]byte{0xff}, 9), 0x00), 64, true, 1<<63 - 1, true},
	} {
		r := &reader{buf: tc.in}
		got, err := r.leb("x", tc.bits, tc.signed)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("leb(%x, %d, %v) = %#x, %v; want %#x, ok=%v", tc.in, tc.bits, tc.signed, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("leb(%x) error %v does not wrap ErrMalformed", tc.in, err)
		}
	}
	for _, v := range []uint32{0, 1, 127, 128, 1 << 14, 1<<32 - 1} {
		r := &reader{buf: appendU32(nil, v)}
		if got, err := r.u32("x"); err != nil || got != v || r.remaining() != 0 {
			t.Errorf("appendU32(%d) round trip = %d, %v", v, got, err)
		}
	}
}
