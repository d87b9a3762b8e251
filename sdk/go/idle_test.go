package gojinn

import "testing"

// With the heap growing by the same amount between idle calls, the pacer
// collects in the last interval before two thirds of the headroom, not
// earlier; a heap that has just been collected is not due.
func TestIdlePacer(t *testing.T) {
	const kib, mib = 1 << 10, 1 << 20
	live, goal := uint64(170*kib), uint64(4*mib)
	threshold := live + (goal-live)/3*2
	for _, growth := range []uint64{2 * kib, 120 * kib, mib, 3 * mib} {
		var p idlePacer
		objects := live
		for calls := 1; ; calls++ {
			objects += growth
			if p.due(objects, live, goal) {
				if objects+growth < threshold || (objects >= threshold && calls > 1) {
					t.Errorf("growth %d: due at %d bytes, call %d; threshold %d", growth, objects, calls, threshold)
				}
				break
			}
			if objects >= threshold {
				t.Fatalf("growth %d: not due at %d bytes, past the threshold %d", growth, objects, threshold)
			}
		}
		// Just collected: what remains is what the collection kept.
		p.last = 0
		if p.due(live, live, goal) {
			t.Errorf("growth %d: due right after a collection", growth)
		}
	}
	// Go collected between two calls: growth counts from what it kept.
	var p idlePacer
	p.due(threshold-10*kib, live, goal)
	if p.due(live+10*kib, live, goal) {
		t.Error("due after Go's own collection")
	}
	if p.due(mib, 4*mib, 4*mib) {
		t.Error("due with no headroom: Go's collector decides")
	}
}
