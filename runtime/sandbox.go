package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// sandbox is one module instance and what the host needs to bound it.
type sandbox struct {
	mod    api.Module
	mem    *memory
	stopG  api.MutableGlobal // nil when wazero's termination checks are used
	guard  *guard            // reused by the calls of a warm instance (stopG set)
	sleep  *sleeper
	stderr *capWriter
	kv     *kvCall // the invocation's KV state when the module uses KV
}

// newSandbox creates an instance of m with memory of the given kind under
// the running guard g, and attaches its stop global to g. No guest code
// runs (start functions are called by the caller under the same guard),
// except a wasm start section, which only modules compiled with wazero's
// own termination checks may have.
func (f *Function) newSandbox(g *guard, m *module, kind memKind, cfg wazero.ModuleConfig, sb *sandbox) error {
	alloc := newMemAllocator(kind, f.spec.Limits.MemoryBytes, f.engine.mem)
	if v, ok := f.goMemLimit(m); ok {
		cfg = cfg.WithEnv(goMemLimitEnv, v)
	}
	start := time.Now()
	mod, err := alloc.instantiate(g.ctx, m.rt, m, cfg.WithStartFunctions())
	f.engine.cfg.Metrics.instantiated(f.spec.Name, err)
	if parent := recording(g.ctx); parent != nil {
		parent.SetAttributes(AttrInstantiated.Bool(true))
		recordSpan(g.ctx, "instantiate "+f.spec.Name, start, err != nil)
	}
	sb.mem = alloc.mem
	if err != nil {
		return err
	}
	sb.mod = mod
	if m.stop != "" {
		stopG, ok := mod.ExportedGlobal(m.stop).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("stop global %s missing after instrumentation", m.stop)
		}
		sb.stopG = stopG
		g.attach(stopG)
	}
	return nil
}

// close closes the sandbox's module, if it was created.
func (sb *sandbox) close() {
	if sb.mod != nil {
		_ = sb.mod.Close(context.Background())
	}
}

// guarded runs call under the function's timeout and the CPU budget
// (0: none). It returns the CPU time used and the failure if any. A call
// the guard stopped (the timeout, the CPU budget, Engine.Close or the
// caller) always fails with the stop's reason, also when the guest
// returned normally: woken early from a sleep or a KV call, or in code
// without loops, it acted on a wait that was cut short, so what it
// answered must not be served (DESIGN.md, "Why a stopped call always
// fails"). On a failure the sandbox must be discarded.
func (f *Function) guarded(ctx context.Context, sb *sandbox, during string, budget time.Duration, call func(*guard) error) (time.Duration, *InvokeError) {
	return f.guardedFor(ctx, sb, during, f.spec.Limits.Timeout, budget, call)
}

// guardedFor is guarded with a timeout of its own.
func (f *Function) guardedFor(ctx context.Context, sb *sandbox, during string, timeout, budget time.Duration, call func(*guard) error) (time.Duration, *InvokeError) {
	calls := f.engine.calls
	var g *guard
	if sb.stopG != nil { // a warm, instrumented instance
		if sb.guard == nil {
			sb.guard = newReusableGuard(sb.stopG, &calls.closing)
			calls.watch(sb.guard) // until pool.discard
		}
		g = sb.guard
		g.begin(ctx, timeout, budget, sb.sleep)
	} else {
		g = startGuard(ctx, timeout, budget, sb.sleep, nil)
		calls.watch(g)
		defer calls.forget(g)
	}
	if sb.kv != nil {
		sb.kv.guard = g // KV host calls report their waits to it
	}
	// A refused grow labels only the failure of the call it happened in
	// (an earlier request, _initialize or an idle call may have handled
	// one): every call into the guest comes through here.
	sb.mem.clearRefused()
	err := call(g)
	// stop decides under the guard's lock: a stop that lands after call
	// returned, before stop takes the lock, counts as much as one that
	// ended the call.
	cpu, stopped := g.stop()
	if err != nil || stopped != nil {
		e := f.failure(during, err, stopped, sb.mem, sb.stderr)
		e.CPUTime = cpu
		return cpu, e
	}
	return cpu, nil
}
