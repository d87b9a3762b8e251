package runtime

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// sandbox is one module instance and what the host needs to bound it.
type sandbox struct {
	mod    api.Module
	mem    *memory
	stopG  api.MutableGlobal // nil when wazero's termination checks are used
	sleep  *sleeper
	stderr *capWriter
}

// instantiate creates an instance of m with memory of the given kind. No
// guest code runs (start functions are called through guarded), except a
// wasm start section, which only modules compiled with wazero's own
// termination checks may have.
func (f *Function) instantiate(ctx context.Context, m *module, kind memKind, cfg wazero.ModuleConfig, sl *sleeper, stderr *capWriter) (*sandbox, error) {
	alloc := newMemAllocator(kind, f.spec.Limits.MemoryBytes)
	sb := &sandbox{sleep: sl, stderr: stderr}
	var err error
	_, ierr, _ := f.guarded(ctx, sb, "instantiating the module", func(ctx context.Context) error {
		sb.mod, err = alloc.instantiate(ctx, m.rt, m, cfg.WithStartFunctions())
		sb.mem = alloc.mem
		return err
	})
	if ierr != nil {
		if sb.mod != nil {
			_ = sb.mod.Close(context.Background())
		}
		return nil, ierr
	}
	if m.stop != "" {
		g, ok := sb.mod.ExportedGlobal(m.stop).(api.MutableGlobal)
		if !ok {
			_ = sb.mod.Close(context.Background())
			return nil, f.errorf(ErrInternal, nil, "stop global %s missing after instrumentation", m.stop)
		}
		sb.stopG = g
	}
	return sb, nil
}

// guarded runs call under the function's time and CPU limits. It returns
// the CPU time used, the failure if any, and whether the sandbox must be
// discarded (the call failed or was stopped from outside).
func (f *Function) guarded(ctx context.Context, sb *sandbox, during string, call func(context.Context) error) (time.Duration, *InvokeError, bool) {
	g := startGuard(ctx, f.spec.Limits.Timeout, f.spec.Limits.CPUTime, sb.sleep, sb.stopG)
	err := call(g.ctx)
	cpu, stopped := g.stop()
	if err != nil {
		return cpu, f.failure(during, err, stopped, sb.mem, sb.stderr), true
	}
	return cpu, nil, stopped != nil
}
