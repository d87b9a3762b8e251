package wasmbin

import (
	"bytes"
	"testing"
)

func TestZZScale(t *testing.T) {
	many := func(n int, b []byte) []byte { return bytes.Repeat(b, n) }
	i32s := func(n int) []byte { return bytes.Repeat([]byte{i32}, n) }
	const S = 2_000_000
	f0 := body(0x00)
	for _, R := range []int{1, 16, 100, 1000} {
		N := S / R
		f1 := body(many(N, []byte{0x10, 0x00}), 0x00)
		measure(t, "calls R="+itoa(R), wasmModule(sec(1, vec(functype(nil, i32s(R)), functype(nil, nil))), sec(3, vec([]byte{0}, []byte{1})), sec(10, vec(f0, f1))))
	}
	for _, R := range []int{1, 16, 100, 1000} {
		N := S / R
		f1 := body(many(N, []byte{0x10, 0x00, 0x1a}), 0x00)
		_ = f1
		// calls consuming and producing R: g: [R] -> [R]
		f2 := body(0x10, 0x00, many(N, []byte{0x10, 0x01}), 0x00)
		measure(t, "chain R->R R="+itoa(R), wasmModule(sec(1, vec(functype(nil, i32s(R)), functype(i32s(R), i32s(R)), functype(nil, nil))), sec(3, vec([]byte{0}, []byte{1}, []byte{2})), sec(10, vec(f0, body(0x00), f2))))
	}
	f1 := body(many(S/2, []byte{0x41, 0x00}), 0x00)
	measure(t, "i32.const", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec([]byte{0})), sec(10, vec(f1))))
	f1 = body(many(S/2, []byte{0x41, 0x00, 0x1a}), 0x00)
	measure(t, "i32.const drop", wasmModule(sec(1, vec(functype(nil, nil))), sec(3, vec([]byte{0})), sec(10, vec(f1))))
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
