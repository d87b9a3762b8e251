package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/gojinn/gojinn/runtime/internal/linmem"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// primeReserve is the request buffer a pooled instance asks for before its
// snapshot is taken, so most requests need no reserve call.
const primeReserve = 64 << 10

// instance is one instantiated reactor module speaking the pooled ABI. It
// serves one request at a time.
type instance struct {
	fn      *Function
	mod     api.Module
	mem     *memory // linear memory with limit and, when resetting, snapshot
	sb      *sandbox
	reserve api.Function
	handle  api.Function
	// idle is the guest's gojinn_v1_idle, nil when it exports none; served
	// counts the requests since the last idle call.
	idle   api.Function
	served int
	reset  bool
	// heapReserve is the GOJINN_HEAP_RESERVE this instance was made
	// with (bytes; 0: none), see Function.heapReserve.
	heapReserve uint64

	globals    []api.MutableGlobal
	globalSnap []uint64
	buf, bufN  uint32 // request buffer in guest memory and its size
	snapBuf    uint32 // buf and bufN as of the snapshot
	snapBufN   uint32

	stdout, stderr *capWriter
	sleep          sleeper
	wire           []byte
	stack          []uint64
}

// newInstance instantiates a reactor module and runs its _initialize.
// Pooled instances with a reset strategy are primed and snapshotted.
func (f *Function) newInstance(ctx context.Context, m *module, pooled bool) (*instance, error) {
	in := f.allocInstance(pooled)
	// One guard covers instantiation, _initialize and the priming call. It
	// has the timeout but not the CPU budget: the budget is a request's, and
	// a pooled instance is made once for many requests (the one that
	// happened to need it would otherwise pay for it, and a budget smaller
	// than the initialisation would fail every cold request).
	const during = "initialising the module"
	// A stopped _initialize fails with the stop's reason even when it
	// returned (guarded): the instance may be half-initialised.
	_, ierr := f.guarded(ctx, in.sb, during, 0, func(g *guard) error {
		return in.start(g, m)
	})
	if ierr != nil {
		in.sb.close()
		return nil, ierr
	}
	if in.reset {
		if err := in.snapshot(m); err != nil {
			in.close()
			return nil, err
		}
	}
	return in, nil
}

// allocInstance makes the host side of an instance; start creates the
// guest side.
func (f *Function) allocInstance(pooled bool) *instance {
	in := &instance{
		fn:     f,
		reset:  pooled && f.reset != ResetNone,
		stdout: newCapWriter(f.spec.Limits.MaxStdout),
		stderr: newCapWriter(f.spec.Limits.MaxStderr),
		stack:  make([]uint64, 1),
	}
	in.sb = &sandbox{sleep: &in.sleep, stderr: in.stderr}
	return in
}

// start instantiates m under the running guard g and runs _initialize;
// an instance that will be reset also reserves its request buffer, so the
// buffer is part of the snapshot.
func (in *instance) start(g *guard, m *module) error {
	f := in.fn
	kind := memPlain
	if in.reset {
		kind = memKindFor(f.reset)
	}
	cfg := f.base.WithStdout(in.stdout).WithStderr(in.stderr).WithNanosleep(in.sleep.sleep)
	if in.reset {
		if r, ok := f.heapReserveEnv(); ok {
			cfg = cfg.WithEnv(heapReserveEnv, strconv.FormatUint(r, 10))
			in.heapReserve = r
		}
	}
	sb := in.sb
	if err := f.newSandbox(g, m, kind, cfg, sb); err != nil {
		return err
	}
	in.mod, in.mem = sb.mod, sb.mem
	in.reserve = sb.mod.ExportedFunction(exportReserve)
	in.handle = sb.mod.ExportedFunction(exportHandle)
	if m.idle {
		in.idle = sb.mod.ExportedFunction(exportIdle)
	}
	if m.init {
		if _, err := sb.mod.ExportedFunction(exportInitialize).Call(g.ctx); err != nil {
			return err
		}
	}
	if in.reset {
		return in.ensureBuffer(g.ctx, primeReserve)
	}
	return nil
}

// snapshot records the state every request starts from: linear memory and
// the values of all mutable globals. No guest code runs.
func (in *instance) snapshot(m *module) error {
	for _, ge := range m.globals {
		mg, ok := in.mod.ExportedGlobal(ge.Name).(api.MutableGlobal)
		if !ok {
			return in.fn.errorf(ErrInternal, nil, "global %s is not exported as mutable after the rewrite", ge.Name)
		}
		in.globals = append(in.globals, mg)
		in.globalSnap = append(in.globalSnap, mg.Get())
	}
	in.snapBuf, in.snapBufN = in.buf, in.bufN
	if err := in.mem.snapshot(); err != nil {
		return in.fn.errorf(ErrInternal, err, "memory snapshot")
	}
	return nil
}

// ensureBuffer makes the guest's request buffer hold at least n bytes.
func (in *instance) ensureBuffer(ctx context.Context, n uint32) error {
	if n <= in.bufN && in.bufN > 0 {
		return nil
	}
	in.stack[0] = uint64(n)
	if err := in.reserve.CallWithStack(ctx, in.stack); err != nil {
		return err
	}
	in.buf, in.bufN = uint32(in.stack[0]), n
	return nil
}

// serve runs one request. broken reports that the instance must not be
// reused.
func (in *instance) serve(ctx context.Context, req *protocol.Request) (res *Result, broken bool, err error) {
	return in.serveWith(ctx, req, nil)
}

// serveWith is serve; when m is not nil the instance is first started
// from m under the same guard (isolated mode: one guard, and one pair of
// CPU clock reads, per invocation).
func (in *instance) serveWith(ctx context.Context, req *protocol.Request, m *module) (res *Result, broken bool, err error) {
	f := in.fn
	in.wire = protocol.AppendRequestWire(in.wire[:0], req)
	if len(in.wire) > math.MaxUint32/2 {
		return nil, false, f.errorf(ErrRequestTooLarge, nil, "encoded request is %d bytes", len(in.wire))
	}
	during := "handling the request"
	if m != nil {
		during = "starting the module and handling the request"
	}
	var packed uint64
	cpu, ierr := f.guarded(ctx, in.sb, during, f.spec.Limits.CPUTime, func(g *guard) (err error) {
		if m != nil {
			if err := in.start(g, m); err != nil {
				return err
			}
		}
		packed, err = in.call(g.ctx)
		return err
	})
	if ierr != nil {
		// Stopped ones too, whatever they answered (guarded); what they
		// wrote to stdout goes with the instance.
		return nil, true, ierr
	}
	resp, rerr := in.readResponse(packed)
	res = &Result{Response: resp, CPUTime: cpu, Stdout: in.stdout.take(), Stderr: in.stderr.take()}
	if rerr != nil {
		rerr.Stderr, rerr.CPUTime = res.Stderr, cpu
		return nil, false, rerr
	}
	return res, false, nil
}

func (in *instance) call(ctx context.Context) (uint64, error) {
	n := uint32(len(in.wire))
	if err := in.ensureBuffer(ctx, n); err != nil {
		return 0, err
	}
	if !in.mod.Memory().Write(in.buf, in.wire) {
		return 0, fmt.Errorf("%s returned %#x, which with %d bytes falls outside linear memory", exportReserve, in.buf, n)
	}
	in.stack[0] = uint64(n)
	if err := in.handle.CallWithStack(ctx, in.stack); err != nil {
		return 0, err
	}
	return in.stack[0], nil
}

// readResponse copies the response out of guest memory and decodes it.
func (in *instance) readResponse(packed uint64) (*protocol.Response, *InvokeError) {
	f := in.fn
	ptr, n := uint32(packed>>32), uint32(packed)
	if limit := maxResponseWire(f.spec.Limits.MaxResponseBody); int64(n) > limit {
		return nil, f.errorf(ErrBadResponse, nil, "response is %d bytes, more than a body of max_response_body (%d bytes) and the most headers allow (%d bytes in all)",
			n, f.spec.Limits.MaxResponseBody, limit)
	}
	data, ok := in.mod.Memory().Read(ptr, n)
	if !ok {
		return nil, f.errorf(ErrBadResponse, nil, "%s returned %d bytes at %#x, outside linear memory", exportHandle, n, ptr)
	}
	resp, err := protocol.DecodeResponseWireFields(data)
	if err != nil {
		return nil, f.errorf(ErrBadResponse, err, "%v", err)
	}
	if int64(len(resp.Body)) > f.spec.Limits.MaxResponseBody {
		return nil, f.errorf(ErrBadResponse, nil, "response body is %d bytes, the limit is %d", len(resp.Body), f.spec.Limits.MaxResponseBody)
	}
	return resp, nil
}

// maxResponseWire is the size of the largest wire response readResponse
// reads with a body limit of maxBody: the body, the header names and values
// the protocol allows (the decoder checks those), up to 7 bytes of framing
// per header field (a tag and two lengths) and 64 KiB for the rest (magic,
// status, the body's framing, fields this host does not know).
func maxResponseWire(maxBody int64) int64 {
	return maxBody + protocol.MaxResponseHeaderBytes + 7*protocol.MaxResponseHeaderFields + 64<<10
}

// maxResponseJSON is maxResponseWire for a command's JSON response on
// stdout: the body base64-encoded (4 bytes per 3), the header names and
// values JSON-escaped (at most 6 bytes per byte, \u00XX), up to 8 bytes of
// framing per field (quotes, colon, brackets, commas) and 64 KiB for the
// rest. The decoder enforces the protocol's header limits; this only
// bounds what the host buffers.
func maxResponseJSON(maxBody int64) int64 {
	return (maxBody+2)/3*4 + 6*protocol.MaxResponseHeaderBytes + 8*protocol.MaxResponseHeaderFields + 64<<10
}

// restore returns the instance to its snapshot.
func (in *instance) restore() error {
	if err := in.mem.reset(); err != nil {
		return err
	}
	for i, g := range in.globals {
		g.Set(in.globalSnap[i])
	}
	in.buf, in.bufN = in.snapBuf, in.snapBufN
	return nil
}

func (in *instance) close() {
	if in.mod != nil {
		_ = in.mod.Close(context.Background())
	}
}

// failure turns the error of a guest call into an InvokeError: the one
// place a stop's reason becomes the call's error. stopped is the guard's
// verdict, which wins over err (err may be nil: the guest returned,
// before it noticed the stop or after a wait the stop cut short); mem
// tells whether the guest hit its memory limit.
func (f *Function) failure(during string, err, stopped error, mem *memory, stderr *capWriter) *InvokeError {
	l := f.spec.Limits
	var e *InvokeError
	var exit *sys.ExitError
	switch {
	case stopped == ErrTimeout:
		e = f.errorf(ErrTimeout, err, "still running after %v while %s; make it faster or raise the timeout", l.Timeout, during)
	case stopped == ErrCPUBudget:
		e = f.errorf(ErrCPUBudget, err, "used more than %v of CPU time while %s; make it do less per request or raise the CPU budget (limits.cpu_time, deploy --cpu)", l.CPUTime, during)
	case stopped == ErrEngineClosed:
		e = f.closedError(err, "while "+during)
	case stopped != nil: // ErrCanceled
		e = f.errorf(stopped, err, "the caller went away while %s", during)
	case mem != nil && mem.nodeRefused.Load(), errors.Is(err, ErrNodeMemory):
		budget := f.engine.mem
		if errors.Is(err, ErrNodeMemory) { // a new instance's memory did not fit
			detail := strings.TrimPrefix(err.Error(), ErrNodeMemory.Error()+": ")
			e = f.errorf(ErrNodeMemory, nil, "%s, while %s; retry shortly, or raise runtime.max_guest_memory", detail, during)
			break
		}
		e = f.errorf(ErrNodeMemory, err, "asked for memory within its own limit while %s, but the node's guests hold %d of the %d bytes runtime.max_guest_memory allows; retry shortly, or raise runtime.max_guest_memory",
			during, budget.inUse(), budget.limitOrZero())
	case mem != nil && mem.refused.Load(), errors.Is(err, linmem.ErrLimit):
		linear, tables := uint64(l.MemoryBytes), ""
		if mem != nil && mem.limit != 0 && mem.limit < linear {
			linear = mem.limit
			tables = fmt.Sprintf(" (the memory limit of %d bytes less %d bytes of tables)", l.MemoryBytes, uint64(l.MemoryBytes)-mem.limit)
		}
		e = f.errorf(ErrMemoryLimit, err, "asked for more than %d bytes of linear memory%s while %s", linear, tables, during)
	case errors.As(err, &exit):
		e = f.errorf(ErrExit, err, "exited with code %d while %s", exit.ExitCode(), during)
	default:
		e = f.errorf(ErrTrap, err, "%s while %s", firstLine(err.Error()), during)
	}
	if stderr != nil {
		e.Stderr = stderr.take()
	}
	return e
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
