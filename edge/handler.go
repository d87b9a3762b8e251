package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"go.opentelemetry.io/otel/trace"
)

// Handler routes requests to functions and runs them. It is the edge's
// http.Handler on every listener.
type Handler struct {
	// Invoker runs functions.
	Invoker Invoker
	// Router picks the function for a request. When nil, every request
	// goes to Function.
	Router *Router
	// Function serves every request when Router is nil.
	Function string
	// MaxBody caps request bodies read from clients; a function's own
	// smaller limit (BodyLimiter) applies before the body is read too.
	// Default 10 MiB.
	MaxBody int64
	// MaxBodyMemory caps the bytes of request bodies the handler holds at
	// once, over all requests: bodies are read whole before a function
	// runs, and a request whose body would pass the cap is answered 503
	// (Retry-After: 1) at once. Default DefaultMaxBodyMemory; a value
	// not above MaxBody counts as MaxBody plus one byte (reading a body
	// of exactly MaxBody takes one byte more, to tell it from a longer
	// one). Negative: no cap.
	MaxBodyMemory int64
	// Dev puts the reason for a failed invocation into the response body.
	// Off in production: reasons can name internals.
	Dev bool
	// Logger receives one line per failed invocation. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, counts requests and invocations.
	Metrics *Metrics
	// Tracer, when set, makes a span per request and per invocation.
	// When nil (no exporter configured) the handler does no span work.
	Tracer *Tracer
	// AccessLog logs one Info line per request to Logger: method, path
	// (never the query, which may carry secrets), protocol, status,
	// duration, and for routed requests function, version, request id
	// and trace id.
	AccessLog bool
	// FunctionLogs, when set, also gets a record (source "host", level
	// error) for every failed invocation, so that `gojinn-node logs FN`
	// shows timeouts and traps beside the function's own lines.
	FunctionLogs interface{ Keep(runtime.LogRecord) }

	bodyOnce   sync.Once
	bodies     *bodyMemory
	bodyWarned atomic.Int64 // when a body-memory refusal was last logged (Unix ns)
}

// BodyLimiter is implemented by an Invoker that knows each function's own
// request body limit (*runtime.Engine does): the handler then refuses a
// body over it before reading it.
type BodyLimiter interface {
	MaxRequestBody(function string) (int64, bool)
}

// bodyMemory returns the handler's body budget, nil when uncapped.
func (h *Handler) bodyMemory() *bodyMemory {
	h.bodyOnce.Do(func() {
		limit := h.MaxBodyMemory
		if limit == 0 {
			limit = DefaultMaxBodyMemory
		}
		if limit > 0 {
			maxBody := h.MaxBody
			if maxBody == 0 {
				maxBody = 10 << 20
			}
			h.bodies = &bodyMemory{limit: max(limit, maxBody+1)}
		}
	})
	return h.bodies
}

// served is what a request turned into, for the access log.
type served struct {
	function, version, requestID, traceID string
}

// StatusNotDelivered is the status the access log, the metrics and the
// server span report when writing a function's answer failed: the client
// went away or stopped reading until the write timeout. It is nginx's 499
// ("client closed request"); nothing is sent with it. Only failures that
// happen while the handler writes are seen: a small answer the server
// buffers and fails to send after the handler returned is reported with
// its status.
const StatusNotDelivered = 499

// RetryAfterDeploying is the Retry-After value, in seconds, sent with the
// 503 for a routed function that is not loaded yet.
const RetryAfterDeploying = "2"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var span trace.Span
	if h.Tracer != nil {
		r, span = h.Tracer.startServer(r)
	}
	var start time.Time
	var info *served
	if h.AccessLog {
		start, info = time.Now(), &served{}
	}
	code := h.serve(w, r, info)
	h.Metrics.request(r.ProtoMajor, code)
	if span != nil {
		endServer(span, code)
	}
	if info != nil {
		h.logAccess(r, code, time.Since(start), info)
	}
}

// logAccess writes the access log line of r.
func (h *Handler) logAccess(r *http.Request, code int, d time.Duration, info *served) {
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto), slog.Int("status", code),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.String("remote", r.RemoteAddr))
	for _, a := range []struct{ k, v string }{
		{"function", info.function}, {"version", info.version},
		{"request_id", info.requestID}, {"trace_id", info.traceID},
	} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	h.logger().LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

// serve answers r and returns the status it sent; it fills info when not
// nil.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, info *served) int {
	function := h.Function
	// Every request gets its id now, so that the answers the edge gives
	// itself (404, 405, 308, 413, ...) carry it in X-Request-Id and their
	// log line, as the function's answers do.
	id := newRequestID()
	if info != nil {
		info.requestID, info.traceID = id, requestTraceID(r)
	}
	early := func() { w.Header().Set("X-Request-Id", id) }
	if code, done := serverLevel(w, r, early); done {
		return code
	}
	if p := r.URL.Path; strings.Contains(p, "/.") || strings.Contains(p, "//") {
		// Route on the path the guest will see: /api/../admin must not
		// match /api/*. Redirect like net/http's ServeMux does.
		if clean := path.Clean(p); clean != p && clean+"/" != p {
			u := *r.URL
			u.Path = clean
			if strings.HasSuffix(p, "/") && clean != "/" {
				u.Path += "/"
			}
			early()
			http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
			return http.StatusPermanentRedirect
		}
	}
	if h.Router != nil {
		m, st := h.Router.Lookup(r.Host, r.URL.Path, r.Method)
		switch st {
		case RouteFound:
			function = m.Function
		case MethodNotAllowed:
			early()
			w.Header().Set("Allow", strings.Join(m.Allowed, ", "))
			http.Error(w, fmt.Sprintf("method %s is not allowed here; allowed: %s", r.Method, strings.Join(m.Allowed, ", ")), http.StatusMethodNotAllowed)
			return http.StatusMethodNotAllowed
		case RouteCatchingUp:
			// The node may not know this route yet: 503, which clients
			// retry and caches do not keep, never a 404. Like fail, the
			// reason only with Dev.
			msg := http.StatusText(http.StatusServiceUnavailable)
			if h.Dev {
				msg = "this node is catching up with the cluster and may not know this route yet; retry shortly"
			}
			early()
			w.Header().Set("Retry-After", RetryAfterDeploying)
			http.Error(w, msg, http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		default:
			early()
			http.Error(w, "no function is routed at this host and path", http.StatusNotFound)
			return http.StatusNotFound
		}
	}
	if info != nil {
		info.function = function
	}
	limit := h.MaxBody
	if limit == 0 {
		limit = 10 << 20
	}
	whose := "the node's"
	if bl, ok := h.Invoker.(BodyLimiter); ok {
		if fl, ok := bl.MaxRequestBody(function); ok && fl < limit {
			limit, whose = fl, "this function's"
		}
	}
	acct := &bodyAccount{mem: h.bodyMemory()}
	defer acct.release()
	req, err := toRequest(r, limit, acct, id)
	if err != nil {
		early()
		return h.bodyFailed(w, r, err, limit, whose)
	}
	if info != nil {
		defer func() {
			// After the invocation: the runtime fills in the version, and
			// the tracer the invocation's traceparent.
			info.version, info.traceID = req.FunctionVersion, traceID(req.TraceParent)
		}()
	}
	ctx := r.Context()
	var span trace.Span
	if h.Tracer != nil {
		ctx, span = h.Tracer.startInvoke(ctx, h.Invoker, function, req)
	}
	// The server's write deadline runs from the request's arrival; lift
	// it while the function runs (the runtime's limits bound the run)
	// and give writing the answer the whole write timeout (deadline.go).
	wd := liftWriteDeadline(w, r)
	start := time.Now()
	res, err := h.Invoker.Invoke(ctx, function, req)
	wd.arm()
	// The body has been copied into the guest: its share of the body
	// memory is free while the answer is written (a slow reader must not
	// hold it for the write timeout).
	bodyLen := len(req.Body)
	req.Body = nil
	acct.release()
	var took time.Duration
	if res != nil {
		took = res.Duration // the runtime timed it already, from about start
	} else {
		took = time.Since(start)
	}
	h.Metrics.invocation(function, err, took, bodyLen, res)
	if span != nil {
		endInvoke(span, err)
	}
	if err != nil {
		if h.Router != nil && errors.Is(err, runtime.ErrUnknownFunction) {
			// A route names it, so the registry has it: this node has not
			// finished loading it yet. As in fail, only Dev names the
			// function in the body.
			msg := http.StatusText(http.StatusServiceUnavailable)
			if h.Dev {
				msg = fmt.Sprintf("function %s is being deployed on this node; retry shortly", function)
			}
			w.Header().Set("Retry-After", RetryAfterDeploying)
			w.Header().Set("X-Request-Id", req.RequestID)
			http.Error(w, msg, http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		}
		return h.fail(w, function, req, err)
	}
	if err := WriteResponse(w, r, res.Response); err != nil {
		return StatusNotDelivered
	}
	return res.Response.StatusOrDefault()
}

// serverLevel answers the requests that are for the server, not for a
// function, and reports whether it did; it calls early (which sets the
// X-Request-Id header) before it answers.
func serverLevel(w http.ResponseWriter, r *http.Request, early func()) (int, bool) {
	switch {
	case r.Method == http.MethodConnect:
		early()
		// Plain CONNECT asks for a tunnel, extended CONNECT (HTTP/2 and
		// HTTP/3 with :protocol, e.g. WebSocket) for another protocol on
		// the stream: neither is served, and a function's 2xx would read
		// as a tunnel established.
		http.Error(w, "CONNECT is not supported: this is not a proxy, and functions answer plain HTTP requests only", http.StatusNotImplemented)
		return http.StatusNotImplemented, true
	case r.Method == http.MethodOptions && r.RequestURI == "*":
		early()
		// The server as a whole, as net/http answers it over HTTP/1.1 and
		// HTTP/2 before any handler: the same here over HTTP/3.
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return http.StatusOK, true
	case r.Method == "PRI" && r.RequestURI == "*":
		early()
		// An HTTP/2 connection preface on a plain-HTTP port (h2c with
		// prior knowledge).
		// The rest of the preface and the frames would parse as more
		// requests: close the connection after this answer.
		w.Header().Set("Connection", "close")
		http.Error(w, "HTTP/2 without TLS (h2c) is not served: use HTTPS for HTTP/2, or HTTP/1.1 here", http.StatusHTTPVersionNotSupported)
		return http.StatusHTTPVersionNotSupported, true
	}
	return 0, false
}

// bodyFailed answers a request whose body could not be read: too large
// (413, before the body is sent when the client asked to continue), over
// the node's body memory (503), not received in time (408), malformed
// (400 with the reason). A transport error's text, which names the node's
// addresses, goes only into Dev answers.
func (h *Handler) bodyFailed(w http.ResponseWriter, r *http.Request, err error, limit int64, whose string) int {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, fmt.Sprintf("request body exceeds %s limit of %d bytes", whose, limit), http.StatusRequestEntityTooLarge)
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBodyMemory):
		now, last := time.Now().UnixNano(), h.bodyWarned.Load()
		if now-last > int64(10*time.Second) && h.bodyWarned.CompareAndSwap(last, now) {
			h.logger().Warn("requests refused: the node holds as many request bodies as edge.max_body_memory allows; raise it, or lower edge.max_body_bytes or max_concurrent_streams (logged at most every 10 s; gojinn_edge_requests_total counts the 503s)",
				"path", r.URL.Path, "proto", r.Proto, "remote", r.RemoteAddr)
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the node is busy reading other request bodies; retry shortly", http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		http.Error(w, "the request body did not arrive in time", http.StatusRequestTimeout)
		return http.StatusRequestTimeout
	case errors.Is(err, errBodyLength):
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return http.StatusBadRequest
	}
	msg := "reading the request body failed"
	if h.Dev {
		msg += ": " + err.Error()
	}
	http.Error(w, msg, http.StatusBadRequest)
	return http.StatusBadRequest
}

func (h *Handler) fail(w http.ResponseWriter, function string, req *protocol.Request, err error) int {
	log := h.logger()
	status := runtime.HTTPStatus(err)
	attrs := []any{"function", function, "request_id", req.RequestID, "status", status, "err", err}
	var ie *runtime.InvokeError
	if errors.As(err, &ie) && ie.Version != "" {
		attrs = append(attrs, "version", ie.Version)
	}
	if id := traceID(req.TraceParent); id != "" {
		attrs = append(attrs, "trace_id", id)
	}
	log.Warn("invocation failed", attrs...)
	// Not for load shedding and callers that left: under overload those
	// come by the thousand and say nothing about the function.
	if h.FunctionLogs != nil && !errors.Is(err, runtime.ErrUnknownFunction) && !errors.Is(err, runtime.ErrBusy) && !errors.Is(err, runtime.ErrCanceled) {
		rec := runtime.LogRecord{Time: time.Now(), Function: function, RequestID: req.RequestID, TraceID: traceID(req.TraceParent),
			Level: slog.LevelError, Message: fmt.Sprintf("invocation failed (%d): %v", status, err), Source: runtime.LogSourceHost}
		if ie != nil {
			rec.Version = ie.Version
		}
		h.FunctionLogs.Keep(rec)
	}
	if errors.Is(err, runtime.ErrBusy) || errors.Is(err, runtime.ErrNodeMemory) {
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
	return status
}

// requestTraceID is the trace id of r for its log line before any
// invocation: its server span's when the tracer started one, else the
// one of its traceparent header ("" for none or an invalid one).
func requestTraceID(r *http.Request) string {
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
		return sc.TraceID().String()
	}
	return traceID(r.Header.Get("Traceparent"))
}

// traceID returns the trace id of a W3C traceparent
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when tp is not one.
func traceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || !lowerHex(tp[:2]) || tp[:2] == "ff" {
		return ""
	}
	id := tp[3:35]
	if !lowerHex(id) || id == "00000000000000000000000000000000" {
		return "" // W3C Trace Context: 32 lowercase hex digits, not all zero
	}
	return id
}

// lowerHex reports whether s is made of the digits 0-9 and a-f only.
func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
