package wasmbin

// A tiny hand-written WebAssembly binary builder for the tests. It encodes
// independently of the package's own appendU32 so that the tests do not
// trust the code under test.

const (
	i32  = 0x7f
	i64  = 0x7e
	f32  = 0x7d
	f64  = 0x7c
	v128 = 0x7b
	fref = 0x70
	xref = 0x6f

	constant = 0x00
	mutable  = 0x01
	opEnd    = 0x0b
)

// uleb encodes v as unsigned LEB128.
func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// sleb encodes v as signed LEB128.
func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// cat concatenates byte slices and strings; bytes, ints and runes are
// appended as single bytes.
func cat(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			out = append(out, p...)
		case byte:
			out = append(out, p)
		case int:
			out = append(out, byte(p))
		case rune:
			out = append(out, byte(p))
		case string:
			out = append(out, p...)
		default:
			panic("cat: unsupported part")
		}
	}
	return out
}

// vec prefixes the concatenated items with their count.
func vec(items ...[]byte) []byte {
	out := uleb(uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

// str encodes a name.
func str(s string) []byte { return cat(uleb(uint64(len(s))), s) }

// sec encodes a section with the given id and payload parts.
func sec(id byte, parts ...any) []byte {
	p := cat(parts...)
	return cat(id, uleb(uint64(len(p))), p)
}

// custom encodes a custom section.
func custom(name string, data string) []byte { return sec(0, str(name), data) }

// wasmModule prepends the header to the sections.
func wasmModule(sections ...[]byte) []byte {
	return cat("\x00asm\x01\x00\x00\x00", cat(anys(sections)...))
}

func anys(bs [][]byte) []any {
	out := make([]any, len(bs))
	for i, b := range bs {
		out[i] = b
	}
	return out
}

// functype encodes a function type.
func functype(params, results []byte) []byte {
	return cat(0x60, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
}

// global encodes a global entry with an init expression (end is appended).
func global(valtype, mut byte, init ...any) []byte {
	return cat(valtype, mut, cat(init...), opEnd)
}

// export encodes an export entry.
func export(name string, kind byte, idx uint32) []byte {
	return cat(str(name), kind, uleb(uint64(idx)))
}

// imp encodes an import entry; desc is the kind byte followed by the descriptor.
func imp(mod, name string, desc ...any) []byte {
	return cat(str(mod), str(name), cat(desc...))
}

// body encodes a function body without locals (end is appended).
func body(instrs ...any) []byte {
	b := cat(0x00, cat(instrs...), opEnd)
	return cat(uleb(uint64(len(b))), b)
}

// i32c and i64c encode constants.
func i32c(v int32) []byte { return cat(0x41, sleb(int64(v))) }
func i64c(v int64) []byte { return cat(0x42, sleb(v)) }

func globalGet(i uint32) []byte { return cat(0x23, uleb(uint64(i))) }
func globalSet(i uint32) []byte { return cat(0x24, uleb(uint64(i))) }
