package linmem

import (
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Instantiate is r.InstantiateModule(ctx, compiled, cfg) with alloc as the
// memory allocator, made safe for allocators from this package:
//
//   - If the module's initial memory exceeds the limit (or a KindCoW
//     reservation cannot be mapped), wazero v1.12 would panic; Instantiate
//     returns an error wrapping ErrLimit (or the OS error) instead.
//   - If instantiation fails after the memory was allocated (a trapping
//     start function, a bad data segment), wazero does not always free it;
//     Instantiate frees it. LinearMemory.Free must therefore be idempotent,
//     as it is for every Memory of this package.
//
// alloc may be any experimental.MemoryAllocator, typically a single-use
// wrapper around Allocator.NewMemory that keeps the Memory it created.
// Panics other than this package's are propagated.
func Instantiate(ctx context.Context, r wazero.Runtime, compiled wazero.CompiledModule,
	cfg wazero.ModuleConfig, alloc experimental.MemoryAllocator) (mod api.Module, err error) {
	rec := &recorder{inner: alloc}
	defer func() {
		if p := recover(); p != nil {
			ip, ok := p.(*initPanic)
			if !ok {
				panic(p)
			}
			mod, err = nil, ip.err
		}
		if err != nil && rec.lm != nil {
			rec.lm.Free()
		}
	}()
	return r.InstantiateModule(experimental.WithMemoryAllocator(ctx, rec), compiled, cfg)
}

// Instantiate instantiates compiled with a Memory from a and returns the
// module and that Memory. The Memory is nil when the module defines no
// memory of its own (it has none, or imports it). Errors are as for the
// package-level Instantiate. Closing the module frees the Memory.
func (a *Allocator) Instantiate(ctx context.Context, r wazero.Runtime, compiled wazero.CompiledModule,
	cfg wazero.ModuleConfig) (api.Module, Memory, error) {
	c := &capture{a: a}
	mod, err := Instantiate(ctx, r, compiled, cfg, c)
	if err != nil {
		return nil, nil, err
	}
	return mod, c.mem, nil
}

// recorder remembers the LinearMemory its allocator returned, so that
// Instantiate can free it on failure.
type recorder struct {
	inner experimental.MemoryAllocator
	lm    experimental.LinearMemory
}

func (r *recorder) Allocate(cap, max uint64) experimental.LinearMemory {
	r.lm = r.inner.Allocate(cap, max)
	return r.lm
}

// capture is the single-use allocator behind Allocator.Instantiate.
type capture struct {
	a   *Allocator
	mem Memory
}

func (c *capture) Allocate(cap, max uint64) experimental.LinearMemory {
	m, err := c.a.NewMemory(cap, max)
	if err != nil {
		return failedMemory{err}
	}
	c.mem = m
	return m
}
