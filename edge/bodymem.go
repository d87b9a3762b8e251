package edge

import (
	"errors"
	"sync/atomic"
)

// errBodyMemory is readBody's error when the node's budget for request
// bodies (Handler.MaxBodyMemory) is spent: the handler answers 503.
var errBodyMemory = errors.New("the node holds as many request bodies as edge.max_body_memory allows")

// DefaultMaxBodyMemory is Handler.MaxBodyMemory's default: 256 MiB.
const DefaultMaxBodyMemory = 256 << 20

// bodyMemory is a node's budget for the request bodies it holds at once.
// Bodies are read whole before the function runs, so without it one HTTP/2
// connection with 250 streams of 10 MiB each holds 2.5 GB before any of
// them waits for an instance, and a few such connections exhaust the
// machine. Each buffer a body grows into is charged before it is
// allocated, and given back when the request ends.
type bodyMemory struct {
	limit int64
	used  atomic.Int64
}

// bodyAccount is what one request holds of a bodyMemory. A nil account (or
// one without a budget) charges nothing.
type bodyAccount struct {
	mem  *bodyMemory
	held int64
}

// hold makes the request hold size bytes in all (the capacity of its new
// buffer; a request holds one buffer at a time, the old one being garbage
// once copied) and reports whether the budget allows it.
func (a *bodyAccount) hold(size int64) bool {
	if a == nil || a.mem == nil || size <= a.held {
		return true
	}
	d := size - a.held
	if a.mem.used.Add(d) > a.mem.limit {
		a.mem.used.Add(-d)
		return false
	}
	a.held = size
	return true
}

// release gives back what the request holds; call it once its body is no
// longer needed.
func (a *bodyAccount) release() {
	if a == nil || a.mem == nil || a.held == 0 {
		return
	}
	a.mem.used.Add(-a.held)
	a.held = 0
}
