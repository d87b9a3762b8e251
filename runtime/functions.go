package runtime

import "sort"

// Functions returns the loaded functions, sorted by name, for metrics and
// status pages.
func (e *Engine) Functions() []*Function {
	e.mu.RLock()
	out := make([]*Function, 0, len(e.fns))
	for _, f := range e.fns {
		out = append(out, f)
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}
