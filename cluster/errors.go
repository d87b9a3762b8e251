package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// ErrUnavailable means the cluster cannot take a write right now: there is
// no leader, leadership was lost while committing, or Raft is shutting down.
// ErrUnknownOutcome (outcome.go) wraps it for writes that may have been
// applied.
// The store wraps it (or returns one of raft's own errors of that kind); the
// API answers 503 with Retry-After, and the client's *APIError matches it
// with errors.Is.
var ErrUnavailable = errors.New("cluster unavailable")

// Error codes of the admin API, sent as {"error":{"code":...}}. They are
// stable: clients and scripts may switch on them. docs/api.md lists which
// status each comes with.
const (
	CodeUnauthorized     = "unauthorized"       // 401: missing or wrong admin token
	CodeNotFound         = "not_found"          // 404: no such endpoint
	CodeMethodNotAllowed = "method_not_allowed" // 405: the endpoint exists; see Allow
	CodeBadRequest       = "bad_request"        // 400: malformed JSON, wrong types, trailing data
	CodeUnknownField     = "unknown_field"      // 400: a JSON field the API does not know
	CodeInvalidName      = "invalid_name"       // 400: function name fails storage.ValidateName
	CodeInvalidSHA256    = "invalid_sha256"     // 400: not 64 lower-case hex digits
	CodeInvalid          = "invalid"            // 400: a value failed validation (every rule of a deploy's spec); 422: the registry refused it
	CodeBodyTooLarge     = "body_too_large"     // 413: JSON body over 1 MiB
	CodeModuleTooLarge   = "module_too_large"   // 413: module over the node's limit
	CodeHashMismatch     = "hash_mismatch"      // 422: uploaded bytes do not hash to the URL's sha256
	CodeBlobMissing      = "blob_missing"       // 409: deploy names a module not uploaded
	CodeCheckFailed      = "check_failed"       // 422: module does not compile, fit its memory limit or initialise, or routes conflict with another function's (pre-check or commit)
	CodeFunctionNotFound = "function_not_found" // 404
	CodeVersionNotFound  = "version_not_found"  // 404
	CodeUnavailable      = "unavailable"        // 503 + Retry-After: no leader, retry; or a write's outcome is unknown (the message says so): read first
	CodeNotReady         = "not_ready"          // 503 on /readyz; 500 when a committed version cannot be served
	CodeWaitTimeout      = "wait_timeout"       // 504: committed, but not served within the wait bound
	CodeSuperseded       = "superseded"         // 409: committed, but a later deploy or rollback made another version active before it was served
	CodeInternal         = "internal"           // 500
	// CodeInsufficientStorage (507): the node's disk is full (or over its
	// quota) or its compilation cache cannot be written; nothing changed.
	CodeInsufficientStorage = "insufficient_storage"
)

// retryAfter is what 503 answers ask clients to wait: a Raft election on
// loopback takes about 2 s with the default timeouts.
const retryAfter = 2 * time.Second

// APIError is an error answer of the admin API. The server builds every
// error response from one, and the Client returns one for every non-2xx
// answer, so the CLI can print Message verbatim.
type APIError struct {
	// Status is the HTTP status code.
	Status int `json:"-"`
	// Code is one of the Code* constants (or "http_<status>" when the
	// answer was not the API's JSON, e.g. from a proxy).
	Code string `json:"code"`
	// Message says what was wrong and what to do.
	Message string `json:"message"`
	// RetryAfter is the server's Retry-After hint; zero when absent.
	RetryAfter time.Duration `json:"-"`
}

// Error returns the message, so it can be shown to users as is.
func (e *APIError) Error() string { return e.Message }

// Is lets callers match API errors against the storage sentinels,
// ErrUnavailable and ErrSuperseded, e.g. errors.Is(err,
// storage.ErrFunctionNotFound).
func (e *APIError) Is(target error) bool {
	switch e.Code {
	case CodeFunctionNotFound:
		return target == storage.ErrFunctionNotFound
	case CodeVersionNotFound:
		return target == storage.ErrVersionNotFound
	case CodeBlobMissing:
		return target == storage.ErrBlobNotFound
	case CodeHashMismatch:
		return target == storage.ErrHashMismatch
	case CodeInvalid, CodeInvalidName, CodeInvalidSHA256:
		return target == storage.ErrInvalid
	case CodeUnavailable:
		return target == ErrUnavailable
	case CodeSuperseded:
		return target == ErrSuperseded
	}
	return false
}

// apiErrorf is the one constructor of API errors.
func apiErrorf(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// unavailable reports whether err is a temporary leader/Raft failure.
func unavailable(err error) bool {
	for _, target := range []error{
		ErrUnavailable, raft.ErrNotLeader, raft.ErrLeadershipLost,
		raft.ErrLeadershipTransferInProgress, raft.ErrRaftShutdown,
		raft.ErrEnqueueTimeout, raft.ErrAbortedByRestore,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// versionNotFound answers err (storage.ErrVersionNotFound) for function
// name, saying how to list its versions.
func versionNotFound(name string, err error) *APIError {
	return apiErrorf(http.StatusNotFound, CodeVersionNotFound,
		"%v; list its versions with `gojinn-node functions versions %s` (GET /v1/functions/%s/versions)", err, name, name)
}

// diskFull reports an error caused by a full disk or quota on this node,
// directly or through a compilation cache that could not be written.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, runtime.ErrCompileStorage)
}

// toAPIError maps an error from the registry, blob store or a handler to
// the answer the client sees. *APIError passes through; storage sentinels
// keep their meaning; anything else is a 500.
func toAPIError(err error) *APIError {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, storage.ErrFunctionNotFound):
		return apiErrorf(http.StatusNotFound, CodeFunctionNotFound, "%v; list functions with GET /v1/functions", err)
	case errors.Is(err, storage.ErrVersionNotFound):
		// Handlers that know the name answer with versionNotFound.
		return apiErrorf(http.StatusNotFound, CodeVersionNotFound, "%v; list the function's versions with `gojinn-node functions versions NAME` (GET /v1/functions/NAME/versions)", err)
	case errors.Is(err, storage.ErrBlobNotFound):
		return apiErrorf(http.StatusConflict, CodeBlobMissing, "%v; upload the module first (PUT /v1/blobs/ followed by its sha256), then deploy again", err)
	case errors.Is(err, storage.ErrRouteConflict):
		// The state machine refused it at commit: a concurrent deploy or
		// rollback took the routes after this node's pre-check passed,
		// or a rollback brought back routes another function now holds.
		return apiErrorf(http.StatusUnprocessableEntity, CodeCheckFailed,
			"%v; choose other routes, or first change or remove the function named (GET /v1/functions lists every function's routes), then try again", err)
	case errors.Is(err, storage.ErrHashMismatch):
		return apiErrorf(http.StatusUnprocessableEntity, CodeHashMismatch, "%v; upload the exact bytes whose sha256 is in the URL", err)
	case errors.Is(err, storage.ErrTooLarge):
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeModuleTooLarge, "%v", err)
	case diskFull(err):
		return apiErrorf(http.StatusInsufficientStorage, CodeInsufficientStorage, "%v; the node cannot write to its data directory: free space there (or raise the quota), then retry", err)
	case errors.Is(err, storage.ErrInvalid):
		return apiErrorf(http.StatusUnprocessableEntity, CodeInvalid, "%v", err)
	case outcomeUnknown(err):
		// Still 503 unavailable, so clients back off as before, but the
		// message must not invite a blind retry.
		ae := apiErrorf(http.StatusServiceUnavailable, CodeUnavailable,
			"the write's outcome is unknown (%v); GET the key or function to see whether it was applied", err)
		ae.RetryAfter = retryAfter
		return ae
	case unavailable(err):
		// The cause may say "retry in a few seconds" already.
		retry := "retry in a few seconds ("
		if strings.Contains(err.Error(), "retry in a few seconds") {
			retry = "("
		}
		ae := apiErrorf(http.StatusServiceUnavailable, CodeUnavailable, "the cluster cannot take writes right now (%v); %san election takes a second or two; if it persists, a majority of the voters may be down: `gojinn-node members` shows them)", err, retry)
		ae.RetryAfter = retryAfter
		return ae
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return apiErrorf(http.StatusServiceUnavailable, CodeUnavailable, "request canceled: %v", err)
	default:
		return apiErrorf(http.StatusInternalServerError, CodeInternal, "internal error: %v", err)
	}
}
