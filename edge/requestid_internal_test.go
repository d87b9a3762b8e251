package edge

import (
	"regexp"
	"testing"
)

// Request ids are 96 bits in lowercase hex (docs/architecture.md), and
// unique: no repeat among many, and the bits vary in every position.
func TestRequestIDs(t *testing.T) {
	hex24 := regexp.MustCompile(`^[0-9a-f]{24}$`)
	const n = 100000
	seen := make(map[string]bool, n)
	var varies [24]map[byte]bool
	for i := range varies {
		varies[i] = map[byte]bool{}
	}
	for range n {
		id := newRequestID()
		if !hex24.MatchString(id) {
			t.Fatalf("request id %q is not 24 lowercase hex digits", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated within %d ids", id, len(seen))
		}
		seen[id] = true
		for i := range id {
			varies[i][id[i]] = true
		}
	}
	for i, d := range varies {
		if len(d) != 16 {
			t.Errorf("digit %d of the request id took %d values in %d ids, want all 16", i, len(d), n)
		}
	}
}

func BenchmarkRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = newRequestID()
	}
}
