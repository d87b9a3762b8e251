package runtime

import (
	"crypto/sha256"
	"sync"
)

// moduleBytes interns the bytes of loaded modules by sha256: every
// function keeps its module's bytes for its life (a module whose compiled
// code was evicted compiles again from them), and functions deployed from
// one module share one copy. Each function held its own before: 40
// functions of one 6 MB Go module held 240 MB of heap.
type moduleBytes struct {
	mu sync.Mutex
	m  map[[32]byte]*internedModule
}

type internedModule struct {
	b    []byte
	refs int
}

// acquire returns the interned copy of module, and its hash, taking a
// reference that release gives back. The caller's slice is copied the
// first time, never kept.
func (mb *moduleBytes) acquire(module []byte) ([]byte, [32]byte) {
	hash := sha256.Sum256(module)
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.m == nil {
		mb.m = map[[32]byte]*internedModule{}
	}
	im := mb.m[hash]
	if im == nil {
		im = &internedModule{b: append([]byte(nil), module...)}
		mb.m[hash] = im
	}
	im.refs++
	return im.b, hash
}

// release gives back a reference taken by acquire; the last one frees the
// bytes.
func (mb *moduleBytes) release(hash [32]byte) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if im := mb.m[hash]; im != nil {
		if im.refs--; im.refs <= 0 {
			delete(mb.m, hash)
		}
	}
}

// held returns how many distinct modules' bytes are held, for tests.
func (mb *moduleBytes) held() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return len(mb.m)
}
