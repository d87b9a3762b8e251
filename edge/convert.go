package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Invoker runs a function; *runtime.Engine satisfies it.
type Invoker interface {
	Invoke(ctx context.Context, function string, req *protocol.Request) (*runtime.Result, error)
}

// Handler serves every request with one function. It is the whole edge of
// `gojinn-node dev` until routing lands.
type Handler struct {
	// Invoker runs the function.
	Invoker Invoker
	// Function is the name of the function to invoke.
	Function string
	// MaxBody caps request bodies read from clients. Default 10 MiB.
	MaxBody int64
	// Dev puts the reason for a failed invocation into the response body.
	Dev bool
	// Logger receives one line per failed invocation. Default slog.Default().
	Logger *slog.Logger
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := h.MaxBody
	if limit == 0 {
		limit = 10 << 20
	}
	req, err := ToRequest(r, limit)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body exceeds %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	res, err := h.Invoker.Invoke(r.Context(), h.Function, req)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	WriteResponse(w, res.Response)
}

func (h *Handler) fail(w http.ResponseWriter, req *protocol.Request, err error) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	status := runtime.HTTPStatus(err)
	log.Warn("invocation failed", "function", h.Function, "request_id", req.RequestID, "status", status, "err", err)
	if errors.Is(err, runtime.ErrBusy) {
		w.Header().Set("Retry-After", "1")
	}
	msg := http.StatusText(status)
	if h.Dev {
		msg = err.Error()
		var ie *runtime.InvokeError
		if errors.As(err, &ie) && len(ie.Stderr) > 0 {
			msg += "\n\nguest stderr:\n" + string(ie.Stderr)
		}
	}
	w.Header().Set("X-Request-Id", req.RequestID)
	http.Error(w, msg, status)
}

// ToRequest reads r (its body capped at maxBody bytes) into a protocol
// request with a fresh request id.
func ToRequest(r *http.Request, maxBody int64) (*protocol.Request, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &protocol.Request{
		Method:      r.Method,
		URI:         r.RequestURI,
		Path:        r.URL.Path,
		RawQuery:    r.URL.RawQuery,
		Headers:     r.Header,
		Body:        body,
		Host:        r.Host,
		Scheme:      scheme,
		Proto:       r.Proto,
		RemoteAddr:  r.RemoteAddr,
		RequestID:   newRequestID(),
		TraceParent: r.Header.Get("Traceparent"),
	}, nil
}

// WriteResponse writes a guest's response to w.
func WriteResponse(w http.ResponseWriter, resp *protocol.Response) {
	h := w.Header()
	for name, vals := range resp.Headers {
		h[name] = vals
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusOrDefault())
	_, _ = w.Write(resp.Body)
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
