package storage

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkKVApplyPut applies puts into a namespace of 100000 keys: the
// cost of one replicated write on every node (decode, path copy, publish).
func BenchmarkKVApplyPut(b *testing.B) {
	r := NewRegistry()
	const keys = 100_000
	var idx uint64
	put := func(key string) {
		idx++
		data, err := EncodeKVCommand(KVCommand{Op: OpKVPut, Namespace: "bench", Key: key, Value: []byte("a value of some thirty bytes.."), Now: t0})
		if err != nil {
			b.Fatal(err)
		}
		if res := r.ApplyCommand(idx, data); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	for i := range keys {
		put(fmt.Sprintf("key/%08d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		put(fmt.Sprintf("key/%08d", i%keys))
	}
}

// BenchmarkKVGet reads one key of 100000 from a published state.
func BenchmarkKVGet(b *testing.B) {
	var tree kvTree[kvItem]
	for i := range 100_000 {
		tree = tree.Set(fmt.Sprintf("key/%08d", i), kvItem{version: uint64(i + 1)})
	}
	st := &State{kv: kvTree[*kvNamespace]{}.Set("bench", &kvNamespace{keys: tree})}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := st.KVGet("bench", fmt.Sprintf("key/%08d", i%100_000), now); err != nil {
			b.Fatal(err)
		}
	}
}
