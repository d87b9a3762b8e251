package runtime

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// invokePooled serves req with a warm instance from the function's pool.
func (f *Function) invokePooled(ctx context.Context, p *pool, req *protocol.Request) (*Result, error) {
	var kc *kvCall
	if p.mod.kv {
		// Before acquire: a new instance's initialisation may use KV too.
		ctx, kc = f.withKVCall(ctx)
	}
	start := time.Now()
	in, err := p.acquire(ctx, f.spec.Limits.QueueTimeout)
	wait := time.Since(start)
	f.waited(wait)
	if span := recording(ctx); span != nil {
		span.SetAttributes(AttrPoolWait.Int64(wait.Microseconds()))
	}
	if err != nil {
		return nil, err
	}
	if kc != nil {
		kc.deadline = time.Now().Add(f.spec.Limits.Timeout) // the queue wait does not count
	}
	in.sb.kv = kc
	res, broken, err := in.serve(ctx, req)
	if !broken && in.reset && in.mem.grownBy() > 0 {
		// Retired rather than reset (memory.grownBy says why); the next
		// request starts a new instance, and Go guests' new instances
		// reserve what this one needed (outgrew).
		f.engine.cfg.Metrics.retiredGrown(f.spec.Name)
		f.outgrew(in)
		broken = true
	}
	if !broken && in.reset {
		rstart := time.Now()
		rerr := in.restore()
		f.engine.cfg.Metrics.reset(f.reset, time.Since(rstart))
		if rerr != nil {
			f.engine.log.Error("instance reset failed; discarding it", "function", f.spec.Name, "version", f.spec.Version, "request_id", req.RequestID, "err", rerr)
			broken = true
		}
	}
	if !broken && in.idle != nil && !in.reset {
		if in.served++; in.served >= idleEvery {
			in.served = 0
			f.maintain(p, in) // releases in
			return res, err
		}
	}
	p.release(in, broken)
	return res, err
}

// idleEvery is how many requests a pooled instance of a guest that exports
// gojinn_v1_idle serves between two idle calls.
const idleEvery = 64

// minIdleTimeout is the least time an idle call may take: a collection of
// a large guest heap at once can outlast a timeout set for requests.
const minIdleTimeout = 10 * time.Second

// maintain calls the guest's gojinn_v1_idle on in, off the request path,
// and then returns in to p. The Go SDK collects garbage there when its heap
// is due for it: collecting inside a reactor's requests costs several times
// more (docs/benchmarks.md), and a collection here is neither in a
// request's latency nor in its CPU budget. The call has the function's
// timeout, or minIdleTimeout when that is longer, and the CPU budget of
// idleEvery requests; an instance whose idle call fails is discarded.
func (f *Function) maintain(p *pool, in *instance) {
	// in keeps its pool slot meanwhile, which keeps the compiled code (the
	// janitor evicts it only from a pool with no instance).
	calls := f.engine.calls
	if !calls.enter() { // the engine is closing
		p.release(in, false)
		return
	}
	go func() {
		defer calls.exit()
		in.sb.kv = nil
		timeout := max(f.spec.Limits.Timeout, minIdleTimeout)
		// A guest must not get round its CPU budget in idle calls: one may
		// use what the requests it follows could have used together (the
		// timeout bounds a request's CPU time when there is no budget).
		budget := idleEvery * cmp.Or(f.spec.Limits.CPUTime, f.spec.Limits.Timeout)
		cpu, ierr := f.guardedFor(calls.ctx, in.sb, "in the idle call", timeout, budget, func(g *guard) error {
			_, err := in.idle.Call(g.ctx)
			return err
		})
		f.engine.cfg.Metrics.idle(f.spec.Name, cpu, ierr != nil)
		if ierr != nil && !errors.Is(ierr, ErrEngineClosed) {
			f.engine.log.Warn("idle call failed; discarding the instance", "function", f.spec.Name, "version", f.spec.Version, "err", ierr)
		}
		// What the guest wrote there belongs to no request.
		in.stdout.take()
		in.stderr.take()
		p.release(in, ierr != nil) // a stopped idle call is a failure too (guardedFor)
	}()
}

// invokeIsolated serves req in a fresh sandbox that is closed afterwards.
func (f *Function) invokeIsolated(ctx context.Context, m *module, req *protocol.Request) (*Result, error) {
	var kc *kvCall
	if m.kv {
		ctx, kc = f.withKVCall(ctx)
	}
	if m.abi == abiReactorV1 {
		in := f.allocInstance(false)
		in.sb.kv = kc
		defer in.sb.close()
		res, _, err := in.serveWith(ctx, req, m)
		return res, err
	}
	return f.runCommand(ctx, m, req)
}

// runCommand runs a WASI command module: request JSON on stdin, response
// JSON on stdout.
func (f *Function) runCommand(ctx context.Context, m *module, req *protocol.Request) (*Result, error) {
	l := f.spec.Limits
	in, err := protocol.MarshalRequestJSON(req)
	if err != nil {
		return nil, f.errorf(ErrInternal, err, "encode request")
	}
	stdout := newCapWriter(maxResponseJSON(l.MaxResponseBody))
	stderr := newCapWriter(l.MaxStderr)
	var sl sleeper
	cfg := f.base.WithStdin(bytes.NewReader(in)).WithStdout(stdout).WithStderr(stderr).WithNanosleep(sl.sleep)
	sb := &sandbox{sleep: &sl, stderr: stderr, kv: kvCallFrom(ctx)}
	defer sb.close()
	// One guard covers instantiation and _start. A stopped command fails
	// with the stop's reason (guarded): what it wrote to stdout, whole
	// response or part, is never decoded.
	cpu, ierr := f.guarded(ctx, sb, "running the command", f.spec.Limits.CPUTime, func(g *guard) error {
		if err := f.newSandbox(g, m, memPlain, cfg, sb); err != nil {
			return err
		}
		_, err := sb.mod.ExportedFunction(exportStart).Call(g.ctx)
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			return nil // proc_exit(0) is how a command says it is done
		}
		return err
	})
	if ierr != nil {
		return nil, ierr
	}
	bad := func(e *InvokeError) (*Result, error) {
		e.CPUTime = cpu
		return nil, e
	}
	if stdout.truncated {
		return bad(f.errorf(ErrBadResponse, nil, "response on stdout exceeds %d bytes, what a body of max_response_body (%d bytes) in base64 and the most headers allow",
			stdout.limit, l.MaxResponseBody))
	}
	resp, derr := protocol.UnmarshalResponseJSON(stdout.buf)
	if derr != nil {
		e := f.errorf(ErrBadResponse, derr, "%v", derr)
		e.Stderr = stderr.take()
		return bad(e)
	}
	if int64(len(resp.Body)) > l.MaxResponseBody {
		return bad(f.errorf(ErrBadResponse, nil, "response body is %d bytes, the limit is %d", len(resp.Body), l.MaxResponseBody))
	}
	return &Result{Response: resp, CPUTime: cpu, Stderr: stderr.take()}, nil
}
