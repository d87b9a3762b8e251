package runtime

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors. Errors returned by Engine and Function wrap one of these,
// so callers test with errors.Is; an *InvokeError carries the details.
var (
	// ErrUnknownFunction means no function of that name is loaded.
	ErrUnknownFunction = errors.New("unknown function")
	// ErrEngineClosed means the engine was closed: the invocation started
	// after Engine.Close began, or was under way then and was stopped by
	// it; or the function was unloaded or replaced before it could start.
	ErrEngineClosed = errors.New("engine closed")
	// ErrInvalidModule means the module bytes are not a WebAssembly module
	// wazero accepts, or the module lacks the exports its mode needs.
	ErrInvalidModule = errors.New("invalid module")
	// ErrCompileStorage means a module could not be compiled because the
	// node could not write its compilation cache (the disk is full or
	// read-only): not the module's fault, and worth retrying once there is
	// room.
	ErrCompileStorage = errors.New("the compilation cache cannot be written")
	// ErrInvalidSpec means a FunctionSpec or Config failed validation.
	ErrInvalidSpec = errors.New("invalid function spec")

	// ErrTimeout means the invocation ran past its wall-clock timeout.
	ErrTimeout = errors.New("function timed out")
	// ErrCPUBudget means the invocation used more CPU time than its budget.
	ErrCPUBudget = errors.New("function exceeded its CPU-time budget")
	// ErrMemoryLimit means the guest asked for more memory than its limit.
	ErrMemoryLimit = errors.New("function exceeded its memory limit")
	// ErrNodeMemory means the guest asked for memory within its own limit
	// but beyond what the node's guests may hold together
	// (Config.MaxGuestMemory): 503, the next try may find room.
	ErrNodeMemory = errors.New("the node's guest memory is exhausted")
	// ErrTrap means the guest trapped (unreachable, out-of-bounds access,
	// stack overflow, division by zero ...) or a host function failed.
	ErrTrap = errors.New("function trapped")
	// ErrExit means the guest exited with a non-zero code (a Go panic in a
	// guest ends this way) or exited when it should have returned.
	ErrExit = errors.New("function exited")
	// ErrBadResponse means the guest's response could not be used: not
	// valid protocol, status out of range or too large.
	ErrBadResponse = errors.New("function returned an invalid response")
	// ErrBusy means every instance of the function stayed busy for the
	// whole queue timeout.
	ErrBusy = errors.New("function is busy")
	// ErrRequestTooLarge means the request body exceeds the function's
	// MaxRequestBody.
	ErrRequestTooLarge = errors.New("request body too large")
	// ErrCanceled means the caller's context ended first (the client went
	// away).
	ErrCanceled = errors.New("invocation canceled")
	// ErrInternal means a bug in the host; the invocation was abandoned.
	ErrInternal = errors.New("internal error")
)

// closedMsg is what every ErrEngineClosed says: that the engine closed,
// when ("while waiting for an instance"), and what to do.
func closedMsg(when string) string {
	return "the engine closed (the node is shutting down) " + when + "; retry elsewhere"
}

// errClosed is ErrEngineClosed for what is not an invocation (Load,
// Check, compiling), with closedMsg's message.
func errClosed(when string) error {
	return fmt.Errorf("%w: %s", ErrEngineClosed, closedMsg(when))
}

// InvokeError describes a failed invocation.
type InvokeError struct {
	// Function and Version name what was invoked.
	Function, Version string
	// Kind is one of the sentinel errors above.
	Kind error
	// Msg says what happened and, where it helps, what to do.
	Msg string
	// Cause is the underlying error from wazero or a decoder, if any.
	Cause error
	// Stderr holds what the guest wrote to stderr (the first
	// Limits.MaxStderr bytes, marked when truncated), which usually
	// explains a trap or an exit.
	Stderr []byte
	// CPUTime is the CPU time the guest's thread used before the
	// invocation failed, as Result.CPUTime counts it; 0 when the guest
	// never ran (a full queue, a request too large).
	CPUTime time.Duration
}

func (e *InvokeError) Error() string {
	s := fmt.Sprintf("function %s@%s: %v", e.Function, e.Version, e.Kind)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Unwrap returns the kind and the cause, so errors.Is matches both.
func (e *InvokeError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// HTTPStatus is the status an HTTP edge should answer with for err.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrUnknownFunction):
		return http.StatusNotFound
	case errors.Is(err, ErrRequestTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrBusy), errors.Is(err, ErrCPUBudget), errors.Is(err, ErrEngineClosed), errors.Is(err, ErrNodeMemory):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrBadResponse):
		return http.StatusBadGateway
	case errors.Is(err, ErrCanceled):
		return 499 // client closed request; never seen by that client
	default:
		return http.StatusInternalServerError
	}
}
