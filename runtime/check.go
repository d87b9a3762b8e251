package runtime

import (
	"context"
	"errors"
	"fmt"
)

// Check validates spec and compiles its module exactly as Load would,
// without making it a function: a deploy path calls it to reject a bad
// module with the compiler's reason before anything is committed. The
// compiled code lands in the disk cache, so the Load that follows is
// cheap.
//
// A reactor module (the pooled ABI) is also instantiated once and
// initialised (_initialize, and for a reset instance the priming call),
// under the function's timeout, memory limit and environment, then
// discarded: a module that traps, exits or runs out of memory while
// initialising would fail every request, so the deploy is refused with
// the reason and what the guest wrote to stderr. A command module (WASI
// _start) runs only with a request and is not started.
//
// A Check that Engine.Close overtakes fails with ErrEngineClosed, as Load
// does; so does one whose module Close stops while it initialises.
func (e *Engine) Check(ctx context.Context, spec FunctionSpec) error {
	if !e.calls.enter() {
		return errClosed("before compiling the module")
	}
	defer e.calls.exit()
	f, err := e.compile(ctx, spec)
	if err != nil {
		return err
	}
	defer f.close(ctx)
	m, _, err := f.ensureCompiled(ctx)
	if err != nil || m.abi != abiReactorV1 {
		return err
	}
	if e.calls.closing.Load() {
		return errClosed("before initialising the module")
	}
	if m.kv {
		ctx, _ = f.withKVCall(ctx) // initialisation may use KV, as in a pool
	}
	in, err := f.newInstance(ctx, m, f.spec.Mode == ModePooled)
	if errors.Is(err, ErrEngineClosed) {
		return err // not the module's fault
	}
	if err != nil {
		msg := fmt.Sprintf("the module failed to initialise: %v", err)
		if ie := (*InvokeError)(nil); errors.As(err, &ie) {
			// Without "function NAME@VERSION": the version is not
			// deployed yet.
			msg = fmt.Sprintf("the module failed to initialise: %v: %s", ie.Kind, ie.Msg)
			if len(ie.Stderr) > 0 {
				msg += "; guest stderr: " + string(ie.Stderr)
			}
		}
		return fmt.Errorf("%w: %s", ErrInvalidModule, msg)
	}
	in.close()
	return nil
}
