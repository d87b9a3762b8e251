package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Engine compiles and runs functions. It is safe for concurrent use.
//
// Goroutines: the engine owns one janitor goroutine (stopped by Close) and
// the idle calls of pooled instances (Function.maintain; Close stops them
// and waits for them); each invocation, Load and Check runs on its
// caller's goroutine (Close stops them too, compiles at their next step,
// and waits for them), plus the short-lived watcher wazero starts per call
// to enforce the deadline. Lock order: Engine.mu, then Function.mu, then
// calls.mu (a pool discarding instances); module.mu is never held with
// either, and guard.mu is taken with none of them held.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	fast   wazero.Runtime // modules instrumented with loop checks
	safe   wazero.Runtime // modules relying on wazero's termination checks
	cache  wazero.CompilationCache
	mods   *moduleCache
	bytes  moduleBytes   // the loaded functions' module bytes, one copy per module
	closed chan struct{} // closed by Close to stop the janitor
	done   chan struct{} // closed by the janitor when it has returned
	// calls tracks the invocations and idle calls under way: Close stops
	// them and waits for them before it closes the runtimes.
	calls *calls
	// mem bounds the linear memory of every instance together
	// (Config.MaxGuestMemory); nil for no bound.
	mem *memBudget

	mu   sync.RWMutex
	fns  map[string]*Function
	shut bool
}

// NewEngine returns an engine with its wazero runtimes and host modules
// (WASI, gojinn_kv_v1, gojinn_log_v1) ready. Close releases it.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("runtime: compilation cache in %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(cache).
		WithMemoryLimitPages(65536)
	fast := wazero.NewRuntimeWithConfig(ctx, rc)
	safe := wazero.NewRuntimeWithConfig(ctx, rc.WithCloseOnContextDone(true))
	for _, rt := range []wazero.Runtime{fast, safe} {
		_, err := wasi_snapshot_preview1.Instantiate(ctx, rt)
		if err != nil {
			err = fmt.Errorf("instantiate WASI: %w", err)
		} else {
			// Always present, so modules importing it load; without
			// cfg.KV its functions answer "not available".
			err = instantiateKV(ctx, rt)
		}
		if err == nil {
			err = instantiateLog(ctx, rt)
		}
		if err != nil {
			_ = fast.Close(ctx)
			_ = safe.Close(ctx)
			_ = cache.Close(ctx)
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	e := &Engine{
		cfg:    cfg,
		log:    cfg.Logger,
		fast:   fast,
		safe:   safe,
		cache:  cache,
		closed: make(chan struct{}),
		done:   make(chan struct{}),
		fns:    map[string]*Function{},
		calls:  newCalls(),
		mem:    newMemBudget(cfg.MaxGuestMemory),
	}
	e.mods = newModuleCache(fast, safe, cfg.MaxConcurrentCompiles, prepCache{dir: cfg.CacheDir}, cfg.Logger, e.calls.ctx)
	go e.janitor()
	return e, nil
}

// Load compiles spec's module (or reuses the compiled code of an identical
// module), checks that it can run in spec's mode, and makes it the
// function's current version. A function already loaded under that name is
// replaced; its in-flight invocations finish on the old version. A module
// that fails to compile is rejected and the old version keeps serving.
//
// A Load that Engine.Close overtakes fails with ErrEngineClosed: a compile
// waiting for its turn stops at once, one under way at its next step.
func (e *Engine) Load(ctx context.Context, spec FunctionSpec) (*Function, error) {
	if !e.calls.enter() {
		return nil, errClosed("before compiling the module")
	}
	defer e.calls.exit()
	f, err := e.compile(ctx, spec)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.shut {
		e.mu.Unlock()
		f.close(ctx)
		return nil, errClosed("while compiling the module")
	}
	old := e.fns[spec.Name]
	e.fns[spec.Name] = f
	e.mu.Unlock()
	if old != nil {
		old.close(ctx)
	}
	e.log.Info("function loaded", "function", spec.Name, "version", spec.Version, "mode", spec.Mode, "reset", spec.Reset, "sha256", fmt.Sprintf("%x", f.hash))
	return f, nil
}

// compile validates spec and returns a function for it with its module
// compiled (or its compiled code shared), not yet registered: Load and
// Check differ only in what they do with it. The caller has entered
// e.calls (Close closes the runtimes only once it exits), and releases the
// function (f.close) before it exits.
func (e *Engine) compile(ctx context.Context, spec FunctionSpec) (*Function, error) {
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	if len(spec.Module) > e.cfg.MaxModuleBytes {
		return nil, fmt.Errorf("%w: module is %d bytes, the node accepts at most %d (Config.MaxModuleBytes)", ErrInvalidModule, len(spec.Module), e.cfg.MaxModuleBytes)
	}
	var hash [32]byte
	spec.Module, hash = e.bytes.acquire(spec.Module)
	f := newFunction(e, spec, hash)
	if _, _, err := f.ensureCompiled(ctx); err != nil {
		f.close(ctx)
		return nil, err
	}
	return f, nil
}

// Unload removes a function. In-flight invocations finish; its instances
// and, when no other function shares it, its compiled code are released.
func (e *Engine) Unload(ctx context.Context, name string) error {
	e.mu.Lock()
	f := e.fns[name]
	delete(e.fns, name)
	e.mu.Unlock()
	if f == nil {
		return fmt.Errorf("%w: %q", ErrUnknownFunction, name)
	}
	f.close(ctx)
	e.cfg.Metrics.forget(name)
	return nil
}

// Function returns the loaded function called name.
func (e *Engine) Function(name string) (*Function, bool) {
	e.mu.RLock()
	f, ok := e.fns[name]
	e.mu.RUnlock()
	return f, ok
}

// Invoke runs the named function for req.
func (e *Engine) Invoke(ctx context.Context, name string, req *protocol.Request) (*Result, error) {
	f, ok := e.Function(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not deployed on this node", ErrUnknownFunction, name)
	}
	return f.Invoke(ctx, req)
}

// MaxRequestBody returns the request body limit of the named function
// (Limits.MaxRequestBody), and false when it is not loaded. The edge reads
// bodies up to it, so that a body over a function's own limit is refused
// before it is read (413, before 100 Continue), not after.
func (e *Engine) MaxRequestBody(name string) (int64, bool) {
	f, ok := e.Function(name)
	if !ok {
		return 0, false
	}
	return f.spec.Limits.MaxRequestBody, true
}

// GuestMemory returns the linear memory the engine's instances hold now
// and the bound on it (Config.MaxGuestMemory; 0 for none), in bytes.
func (e *Engine) GuestMemory() (inUse, limit int64) {
	return e.mem.inUse(), e.mem.limitOrZero()
}

// StopCalls stops every call under way as Close does, without releasing
// anything: guests stop at their next loop iteration, sleeps and KV calls
// are woken, their invocations fail with ErrEngineClosed, and new ones are
// refused with it. A node calls it when its edge's shutdown grace period
// ends, so that requests still running are answered (503) before their
// connections close. Close must still be called.
func (e *Engine) StopCalls() { e.calls.stop() }

// Close unloads every function and releases the wazero runtimes. It first
// stops the invocations and idle calls under way, of these functions or of
// versions they replaced, as a timeout would (a sleep or KV call under way
// is interrupted), and the compiles of Load and Check, and waits for them
// to return: they end with ErrEngineClosed, and invocations, loads and
// checks that start from then on fail with it. A compile in wazero's
// compiler cannot be interrupted and is waited for. The wait is bounded by
// ctx and by 5 seconds; stopped guests return within milliseconds. Should
// some still run then, Close leaves the runtimes open, since closing them
// frees the linear memory those guests run in (and the compiler's state a
// compile uses), and returns an error saying so: their memory is
// reclaimed when the process exits.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.shut {
		e.mu.Unlock()
		return nil
	}
	e.shut = true
	fns := e.fns
	e.fns = map[string]*Function{}
	e.mu.Unlock()

	e.calls.stop()
	// Stop the janitor so it does not race the teardown below.
	close(e.closed)
	<-e.done
	err := e.calls.wait(ctx)
	// Release pools and compiled code, then the runtimes, then the cache.
	// A function's instances still serving a call are discarded when the
	// call returns.
	for _, f := range fns {
		f.close(ctx)
	}
	if err != nil {
		e.log.Error("runtime: guests still running at shutdown; the wazero runtimes are left open", "err", err)
		return fmt.Errorf("runtime: %w; the wazero runtimes were left open", err)
	}
	return errors.Join(e.fast.Close(ctx), e.safe.Close(ctx), e.cache.Close(ctx))
}

// janitor closes idle pools and evicts idle compiled code until Close.
func (e *Engine) janitor() {
	defer close(e.done)
	t := time.NewTicker(e.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-e.closed:
			return
		case now := <-t.C:
			e.sweep(now)
		}
	}
}

// sweep runs one janitor pass.
func (e *Engine) sweep(now time.Time) {
	e.mu.RLock()
	fns := make([]*Function, 0, len(e.fns))
	for _, f := range e.fns {
		fns = append(fns, f)
	}
	e.mu.RUnlock()
	before := e.mem.inUse()
	for _, f := range fns {
		f.sweep(now, e.cfg.PoolIdleTimeout, e.cfg.CompiledIdleTimeout)
	}
	if freed := before - e.mem.inUse(); freed >= returnMemoryAfter {
		// Go hands freed heap back to the kernel over minutes: after a
		// burst's instances are gone the process kept their memory (1.85
		// of 2.27 GB for minutes, measured). A sweep that freed this much
		// returns it now; it costs a collection, and sweeps that free this
		// much are rare.
		freeOSMemory()
		e.log.Debug("returned memory freed by idle instances to the kernel", "freed_bytes", freed)
	}
}

// returnMemoryAfter is how much guest memory one sweep must free before
// the engine returns freed memory to the kernel at once; freeOSMemory
// does it (tests count its calls).
var (
	returnMemoryAfter int64 = 256 << 20
	freeOSMemory            = debug.FreeOSMemory
)
