package runtime

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"

	"github.com/gojinn/gojinn/runtime/internal/wasmbin"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Function is one loaded version of a function.
type Function struct {
	engine *Engine
	spec   FunctionSpec
	hash   [32]byte
	reset  Reset // resolved: never ResetAuto
	base   wazero.ModuleConfig
	// goGuest reports a module linked by the Go toolchain: its instances
	// get GOMEMLIMIT (goMemLimit).
	goGuest bool
	// heapReserve is how much free heap (bytes) new reset instances of a
	// Go guest make room for before their snapshot: the most a request
	// grew an instance's memory by, plus that instance's own reserve
	// (outgrew). 0 until a request outgrows its snapshot.
	heapReserve atomic.Uint64

	lastUsed atomic.Int64 // unix nanos of the last invocation start
	inflight atomic.Int64
	logs     logState // log rate limit and counters (logs.go)
	// poolWait is the function's pool wait histogram, looked up on the
	// first pooled invocation instead of by label on every one.
	poolWaitOnce sync.Once
	poolWait     prometheus.Observer

	// isolated holds a token per isolated invocation under way: at most
	// MaxInstances run at once (nil in pooled mode).
	isolated chan struct{}

	mu     sync.Mutex
	mod    *module // nil while evicted
	pool   *pool   // nil unless ModePooled and compiled
	closed bool
}

// Result is a successful invocation.
type Result struct {
	// Response is the guest's answer. Pooled calls give its headers as
	// Response.Fields (Headers nil: the edge copies them into its
	// ResponseWriter without a map of its own), isolated calls as Headers;
	// Response.HeaderMap gives a map either way.
	Response *protocol.Response
	// Duration is the wall-clock time of the invocation, queueing included.
	Duration time.Duration
	// CPUTime is the CPU time the guest's thread used: read from its CPU
	// clock when the function has a CPU budget; without one, the first
	// millisecond of the call counts as busy time (wall time less waits
	// in sleep and KV host calls) and the clock the rest.
	CPUTime time.Duration
	// Stdout and Stderr are what the guest wrote (capped; pooled mode only
	// for Stdout). They are nil when the guest wrote nothing.
	Stdout, Stderr []byte
}

func newFunction(e *Engine, spec FunctionSpec, hash [32]byte) *Function {
	f := &Function{engine: e, spec: spec, hash: hash, reset: resolveReset(spec.Reset), goGuest: wasmbin.IsGoModule(spec.Module)}
	cfg := wazero.NewModuleConfig().
		WithName("").
		// argv[0] is the function's name, as a program's own name: Go's
		// flag.Parse and anything reading os.Args[0] expect one.
		WithArgs(spec.Name).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithStartFunctions() // started explicitly, see instantiate
	for _, k := range sortedEnv(spec.Env) {
		cfg = cfg.WithEnv(k, spec.Env[k])
	}
	f.base = cfg
	if spec.Mode != ModePooled {
		f.isolated = make(chan struct{}, spec.Limits.MaxInstances)
	}
	f.lastUsed.Store(time.Now().UnixNano())
	return f
}

// Name returns the function's name.
func (f *Function) Name() string { return f.spec.Name }

// Version returns the function's version.
func (f *Function) Version() string { return f.spec.Version }

// Mode returns the function's execution mode.
func (f *Function) Mode() Mode { return f.spec.Mode }

// SHA256 returns the hash of the module as uploaded.
func (f *Function) SHA256() [32]byte { return f.hash }

// ensureCompiled loads the compiled module if it was evicted (or never
// compiled) and, for pooled functions, creates the pool.
func (f *Function) ensureCompiled(ctx context.Context) (*module, *pool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, fmt.Errorf("%w: function %s was unloaded or replaced", ErrEngineClosed, f.spec.Name)
	}
	if f.mod != nil {
		return f.mod, f.pool, nil
	}
	start := time.Now()
	m, source, err := f.engine.mods.acquire(ctx, f.hash, f.spec.Module)
	f.engine.cfg.Metrics.compiled(f.spec.Name, source, time.Since(start), err)
	if source != SourceMemory {
		recordSpan(ctx, "compile "+f.spec.Name, start, err != nil, AttrCompileSource.String(source))
	}
	if err != nil {
		return nil, nil, err
	}
	if err := f.checkModule(m); err != nil {
		f.engine.mods.release(ctx, m)
		return nil, nil, err
	}
	f.mod = m
	if f.spec.Mode == ModePooled {
		f.pool = newPool(f, m, f.spec.Limits.MaxInstances)
	}
	return f.mod, f.pool, nil
}

func (f *Function) checkModule(m *module) error {
	if f.spec.Mode == ModePooled && m.abi != abiReactorV1 {
		return fmt.Errorf("%w: mode %q needs a reactor exporting %s and %s; this module is a WASI command: deploy it with mode %q, or build Go guests with -buildmode=c-shared",
			ErrInvalidModule, ModePooled, exportReserve, exportHandle, ModeIsolated)
	}
	if f.spec.Mode == ModePooled && f.reset != ResetNone {
		if err := m.resettable(f.spec.Module); err != nil {
			return err
		}
	}
	return m.memoryFits(f.spec.Limits.MemoryBytes)
}

// Invoke runs the function for req.
func (f *Function) Invoke(ctx context.Context, req *protocol.Request) (res *Result, err error) {
	start := time.Now()
	if !f.engine.calls.enter() {
		return nil, f.closedError(nil, "before the invocation started")
	}
	defer f.engine.calls.exit()
	f.lastUsed.Store(start.UnixNano())
	f.inflight.Add(1)
	defer f.inflight.Add(-1)
	if ctx.Err() != nil {
		// The guard would stop the guest too, but a short call can finish
		// before its watcher runs: a caller that is gone gets nothing.
		return nil, f.errorf(ErrCanceled, context.Cause(ctx), "the caller went away before the invocation started")
	}
	if int64(len(req.Body)) > f.spec.Limits.MaxRequestBody {
		return nil, f.errorf(ErrRequestTooLarge, nil, "body is %d bytes, the limit is %d", len(req.Body), f.spec.Limits.MaxRequestBody)
	}
	if req.Function == "" {
		req.Function, req.FunctionVersion = f.spec.Name, f.spec.Version
	}
	defer func() {
		if v := recover(); v != nil { // a host bug must not take the node down
			res, err = nil, f.errorf(ErrInternal, nil, "panic: %v", v)
		}
	}()
	m, p, err := f.ensureCompiled(ctx)
	if err != nil {
		return nil, err
	}
	if m.log {
		ctx = f.withLogCall(ctx, req)
	}
	if p != nil {
		res, err = f.invokePooled(ctx, p, req)
	} else if err = f.enterIsolated(ctx); err == nil {
		func() {
			defer func() { <-f.isolated }() // also if a host bug panics
			res, err = f.invokeIsolated(ctx, m, req)
		}()
	}
	f.logOutput(req, res, err) // stdout and stderr lines become log records
	if res != nil {
		res.Duration = time.Since(start)
		if span := recording(ctx); span != nil {
			span.SetAttributes(AttrCPUTime.Int64(res.CPUTime.Microseconds()))
		}
	}
	return res, err
}

// sweep closes the pool's idle instances and evicts the compiled code once
// both have been idle long enough.
func (f *Function) sweep(now time.Time, poolIdle, compiledIdle time.Duration) {
	idle := now.Sub(time.Unix(0, f.lastUsed.Load()))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pool != nil && idle >= poolIdle {
		f.engine.cfg.Metrics.evicted(f.spec.Name, "instance", f.pool.shrink())
	}
	if f.mod == nil || idle < compiledIdle || f.inflight.Load() > 0 || (f.pool != nil && f.pool.live() > 0) {
		return
	}
	if f.pool != nil {
		f.pool.close()
		f.pool = nil
	}
	f.engine.mods.release(context.Background(), f.mod)
	f.mod = nil
	f.engine.cfg.Metrics.evicted(f.spec.Name, "compiled", 1)
	f.engine.log.Debug("compiled code evicted", "function", f.spec.Name, "idle", idle)
}

// close releases the pool and the compiled code. Invocations already
// holding an instance finish; the instance is then discarded.
func (f *Function) close(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	if f.pool != nil {
		f.pool.close()
		f.pool = nil
	}
	if f.mod != nil {
		f.engine.mods.release(ctx, f.mod)
		f.mod = nil
	}
	f.engine.bytes.release(f.hash)
}

func (f *Function) errorf(kind error, cause error, format string, args ...any) *InvokeError {
	return &InvokeError{Function: f.spec.Name, Version: f.spec.Version, Kind: kind, Cause: cause, Msg: fmt.Sprintf(format, args...)}
}

// closedError is the ErrEngineClosed of an invocation that Engine.Close
// refused or stopped; when says at which point ("while waiting for an
// instance").
func (f *Function) closedError(cause error, when string) *InvokeError {
	return f.errorf(ErrEngineClosed, cause, "%s", closedMsg(when))
}

// Stats is a point-in-time view of a function, for metrics and tests.
type Stats struct {
	// Compiled reports whether the compiled code is in memory.
	Compiled bool
	// Instances is the number of live pooled instances, busy or idle.
	Instances int
	// Idle is the number of pooled instances waiting for a request.
	Idle int
	// InFlight is the number of invocations running now.
	InFlight int64
	// LogLines is how many log records this loaded version emitted
	// (gojinn_log_v1 lines and lines of stdout and stderr).
	LogLines uint64
	// LogsDropped is how many log lines the rate limit (Config.LogRate,
	// Config.LogBurst) refused.
	LogsDropped uint64
}

// Stats returns the function's current state.
func (f *Function) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Stats{Compiled: f.mod != nil, InFlight: f.inflight.Load(), LogLines: f.logs.lines.Load(), LogsDropped: f.logs.dropped.Load()}
	if f.pool != nil {
		s.Instances, s.Idle = f.pool.live(), f.pool.idleCount()
	}
	return s
}

// enterIsolated takes one of the function's MaxInstances isolated
// invocation tokens, waiting up to QueueTimeout (as a pooled invocation
// waits for an instance). Each isolated invocation has its own instance
// with up to the memory limit, so without a cap concurrent requests
// multiplied it: 64 of a module with 80 MB tables took a node to 2.3 GB.
func (f *Function) enterIsolated(ctx context.Context) error {
	select {
	case f.isolated <- struct{}{}:
		return nil
	default:
	}
	wait := f.spec.Limits.QueueTimeout
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case f.isolated <- struct{}{}:
		return nil
	case <-t.C:
		return f.errorf(ErrBusy, nil, "all %d isolated invocations stayed busy for %v; retry later or raise max_instances", cap(f.isolated), wait)
	case <-ctx.Done():
		return f.errorf(ErrCanceled, context.Cause(ctx), "while waiting for an isolated invocation to end")
	case <-f.engine.calls.ctx.Done():
		return f.closedError(nil, "while waiting for an isolated invocation to end")
	}
}
