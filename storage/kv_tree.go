package storage

import (
	"hash/maphash"
	"strings"
)

// kvTree is an immutable sorted map from string to V: a treap whose
// updates copy only the path from the root to the changed node (O(log n)
// expected), so every published State keeps its own tree for free and
// readers never lock. It is the sorted index behind prefix listing.
//
// Priorities come from a keyed hash of the key, so the shape does not depend
// on insertion order and keys chosen by a guest cannot degrade the tree
// into a list (the seed is per process; the shape is never observable:
// results and snapshots depend only on the key order).
//
// hashicorp/go-immutable-radix would do the same job, but it is only an
// indirect dependency in go.mod: importing it would make `go mod tidy`
// (run by `make check`) rewrite go.mod. See the design notes in kv.go.
type kvTree[V any] struct {
	root *kvNode[V]
	len  int
}

type kvNode[V any] struct {
	key         string
	prio        uint64
	val         V
	left, right *kvNode[V]
}

var kvSeed = maphash.MakeSeed()

func kvPrio(key string) uint64 { return maphash.String(kvSeed, key) }

// Len is the number of keys.
func (t kvTree[V]) Len() int { return t.len }

// Get returns the value of key.
func (t kvTree[V]) Get(key string) (V, bool) {
	n := t.root
	for n != nil {
		switch c := strings.Compare(key, n.key); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return n.val, true
		}
	}
	var zero V
	return zero, false
}

// Set returns a tree with key set to val.
func (t kvTree[V]) Set(key string, val V) kvTree[V] {
	root, added := kvInsert(t.root, key, kvPrio(key), val)
	if added {
		t.len++
	}
	t.root = root
	return t
}

// Delete returns a tree without key (t itself when key is absent).
func (t kvTree[V]) Delete(key string) kvTree[V] {
	root, ok := kvDelete(t.root, key)
	if !ok {
		return t
	}
	return kvTree[V]{root: root, len: t.len - 1}
}

// Ascend calls fn for every key >= from in order until fn returns false.
func (t kvTree[V]) Ascend(from string, fn func(key string, val V) bool) {
	kvAscend(t.root, from, fn)
}

func kvAscend[V any](n *kvNode[V], from string, fn func(string, V) bool) bool {
	for n != nil {
		if n.key < from {
			n = n.right // everything on the left is smaller still
			continue
		}
		if !kvAscend(n.left, from, fn) || !fn(n.key, n.val) {
			return false
		}
		// The right subtree is all > n.key >= from: walk it without the
		// bound check, iteratively down its right spine.
		from = ""
		n = n.right
	}
	return true
}

// kvInsert returns a copy of the subtree n with key set, and whether the
// key is new. Nodes on the path are copied; the rest is shared.
func kvInsert[V any](n *kvNode[V], key string, prio uint64, val V) (*kvNode[V], bool) {
	if n == nil {
		return &kvNode[V]{key: key, prio: prio, val: val}, true
	}
	cp := *n
	var added bool
	switch c := strings.Compare(key, n.key); {
	case c < 0:
		cp.left, added = kvInsert(n.left, key, prio, val)
		if cp.left.prio > cp.prio {
			// Rotate right; cp.left is a fresh copy, so it may change.
			l := cp.left
			cp.left = l.right
			l.right = &cp
			return l, added
		}
	case c > 0:
		cp.right, added = kvInsert(n.right, key, prio, val)
		if cp.right.prio > cp.prio {
			r := cp.right
			cp.right = r.left
			r.left = &cp
			return r, added
		}
	default:
		cp.val = val
	}
	return &cp, added
}

// kvDelete returns a copy of the subtree n without key, and whether key
// was there.
func kvDelete[V any](n *kvNode[V], key string) (*kvNode[V], bool) {
	if n == nil {
		return nil, false
	}
	switch c := strings.Compare(key, n.key); {
	case c < 0:
		l, ok := kvDelete(n.left, key)
		if !ok {
			return n, false
		}
		cp := *n
		cp.left = l
		return &cp, true
	case c > 0:
		r, ok := kvDelete(n.right, key)
		if !ok {
			return n, false
		}
		cp := *n
		cp.right = r
		return &cp, true
	}
	return kvMerge(n.left, n.right), true
}

// kvMerge joins two subtrees whose keys are all a's < all b's, copying the
// nodes it changes.
func kvMerge[V any](a, b *kvNode[V]) *kvNode[V] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		cp := *a
		cp.right = kvMerge(a.right, b)
		return &cp
	default:
		cp := *b
		cp.left = kvMerge(a, b.left)
		return &cp
	}
}
