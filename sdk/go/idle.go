package gojinn

// idlePacer decides in the host's idle calls (every 64 requests of a
// pooled instance) whether the guest should collect garbage now: when the
// heap, growing as it did since the previous idle call, would pass two
// thirds of the way from what the last collection kept to the heap goal
// before the next idle call. Go's pacer starts its own cycle somewhat
// before the goal (about four fifths of the way for a small guest heap,
// measured); collecting first, at once and between requests, spares the
// requests that cycle (docs/benchmarks.md), and a guest that allocates
// little is collected about as often as Go would.
type idlePacer struct {
	last uint64 // heap objects at the previous idle call
}

// due takes the heap figures: the bytes of objects not yet freed
// (objects), what the last collection kept (live) and the goal.
func (p *idlePacer) due(objects, live, goal uint64) bool {
	prev := p.last
	p.last = objects
	if prev == 0 || prev > objects { // the first call, or a collection ran since
		prev = min(live, objects)
	}
	if goal <= live {
		return false
	}
	return objects+(objects-prev) >= live+(goal-live)/3*2
}
