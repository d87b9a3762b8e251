package wasmbin

import (
	"math"
	"testing"
)

func TestZZBreakdown(t *testing.T) {
	w := goBuildWasip1(t, moduleRoot(t), "./examples/hello")
	c := &limitChecker{wasm: w, dataCount: -1, slotLimit: math.MaxUint64}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	for i, a := range c.types {
		t.Logf("type %d: %d -> %d", i, a.params, a.results)
	}
	// re-scan code with a breakdown
	var counts [256]uint64
	var hits [256]uint64
	m, _ := parse(w)
	r := &reader{buf: w[m.codeBody:m.codeEnd], base: m.codeBody}
	n, _ := r.u32("")
	for i := uint32(0); i < n; i++ {
		size, _ := r.u32("")
		code := r.buf[r.pos : r.pos+int(size)]
		r.pos += int(size)
		for p := 0; p < len(code); p++ {
			one := &limitChecker{types: c.types, funcTypes: c.funcTypes, maxArity: c.maxArity, tagTypes: c.tagTypes}
			s := one.instructionSlots(code[p : p+1+min(5, len(code)-p-1)][:])
			_ = s
			hits[code[p]]++
		}
		_ = counts
	}
	total := uint64(0)
	for b := 0; b < 256; b++ {
		switch b {
		case 0x10, 0x12, 0x11, 0x13, 0x14, 0x15, 0x02, 0x03, 0x04, 0x1f, 0x0c, 0x0d, 0x0f, 0xd5, 0xd6, 0x0e:
			t.Logf("byte 0x%02x: %d positions", b, hits[b])
			total += hits[b]
		}
	}
	t.Logf("len %d slots %d", len(w), c.slots)
}
