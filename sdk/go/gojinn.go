package gojinn

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

var handler http.Handler = http.NotFoundHandler()

// Handle registers h as the function's handler. Call it from init so that
// reactor builds, whose main never runs, see it too.
func Handle(h http.Handler) {
	if h == nil {
		panic("gojinn: Handle called with a nil handler")
	}
	handler, rawHandler = h, nil
}

// HandleFunc registers f as the function's handler.
func HandleFunc(f func(http.ResponseWriter, *http.Request)) { Handle(http.HandlerFunc(f)) }

// Run serves one request as a WASI command: it reads the request JSON from
// stdin, calls the handler and writes the response JSON to stdout. Call it
// from main. While the handler runs, os.Stdout is os.Stderr, so that what
// it prints becomes a log line rather than part of the response. A request that cannot be decoded ends the process with exit
// code 2 and the reason on stderr.
func Run() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fatalf("read request from stdin: %v", err)
	}
	req, err := protocol.UnmarshalRequestJSON(data)
	if err != nil {
		fatalf("decode request: %v", err)
	}
	// stdout carries the response: what the handler prints there goes to
	// stderr (a log line, as printed output is in pooled mode) instead of
	// corrupting it.
	stdout := os.Stdout
	os.Stdout = os.Stderr
	resp := serve(req)
	os.Stdout = stdout
	out, err := protocol.MarshalResponseJSON(resp)
	if err != nil {
		fatalf("encode response: %v", err)
	}
	if _, err := stdout.Write(out); err != nil {
		fatalf("write response: %v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gojinn: "+format+"\n", args...)
	os.Exit(2)
}

// current is the request being served. A guest instance serves one request
// at a time, so a package variable is enough and saves wrapping every
// request's context.
var current *protocol.Request

// Info returns the protocol request behind r while its handler runs:
// request id, trace parent, scheme, function name and version. It is nil
// outside a handler.
func Info(r *http.Request) *protocol.Request {
	if current == nil || r == nil {
		return nil
	}
	return current
}

// serve runs the handler for one request in a fresh writer. A panic in the
// handler becomes a 500 response and a stack trace on stderr. Commands use
// it; reactors use the wire path in exchange.go, which reuses its writer.
func serve(req *protocol.Request) *protocol.Response {
	if rawHandler != nil {
		return serveRawRequest(req)
	}
	w := &responseWriter{header: make(http.Header, 4)}
	ex := new(exchange)
	ex.req = *req
	serveHTTP(w, ex)
	resp := w.finish()
	return &resp
}

// serveHTTP calls the handler with the *http.Request built from ex and
// leaves the response in w. A panic in the handler replaces whatever the
// handler wrote with a 500 response, so the instance stays usable.
func serveHTTP(w *responseWriter, ex *exchange) {
	current = &ex.req
	defer func() {
		current = nil
		if v := recover(); v != nil {
			logPanic(v)
			w.reset()
			w.header["Content-Type"] = []string{"text/plain; charset=utf-8"}
			w.status = http.StatusInternalServerError
			w.body.WriteString("internal error in function\n")
		}
	}()
	handler.ServeHTTP(w, ex.toHTTP())
}

// exchange holds what the guest builds for one request, in one
// allocation: the decoded request, the *http.Request the handler sees with
// its URL and body reader, and room for the header values of a typical
// request. A fresh exchange is made per request because a handler may keep
// its *http.Request (or the Header map) after returning.
type exchange struct {
	req  protocol.Request
	hr   http.Request
	url  url.URL
	body bodyReader
	vals [8]string
}

// terminatedTLS is the r.TLS of every HTTPS request: the node terminated
// TLS, so a handler learns only that the request came over it (code that
// tests r.TLS != nil, such as an HTTPS redirect, must not see plain
// HTTP). Shared by all requests: do not modify it.
var terminatedTLS = tls.ConnectionState{HandshakeComplete: true}

// bodyReader is the request body: a bytes.Reader with a no-op Close.
type bodyReader struct{ bytes.Reader }

// Close implements io.Closer.
func (*bodyReader) Close() error { return nil }

// toHTTP builds the *http.Request a handler sees. It avoids reparsing the
// URI when the host sent the decoded path, and uses http.NoBody for an
// empty body.
func (ex *exchange) toHTTP() *http.Request {
	req := &ex.req
	ex.url = url.URL{Path: req.Path, RawQuery: req.RawQuery}
	u := &ex.url
	if req.Path == "" || needsRawPath(req.URI) {
		if pu, err := url.ParseRequestURI(req.URI); err == nil {
			u = pu
		}
	}
	major, minor := 1, 1
	switch req.Proto {
	case "HTTP/2.0":
		major, minor = 2, 0
	case "HTTP/3.0":
		major, minor = 3, 0
	case "HTTP/1.0":
		minor = 0
	}
	ex.hr = http.Request{
		Method:        req.Method,
		URL:           u,
		Proto:         req.Proto,
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        req.Headers,
		Body:          http.NoBody,
		ContentLength: int64(len(req.Body)),
		Host:          req.Host,
		RemoteAddr:    req.RemoteAddr,
		RequestURI:    req.URI,
	}
	hr := &ex.hr
	if req.Scheme == "https" {
		hr.TLS = &terminatedTLS
	}
	if len(req.Body) > 0 {
		ex.body.Reset(req.Body)
		hr.Body = &ex.body
	}
	if hr.Method == "" {
		hr.Method = http.MethodGet
	}
	if hr.Proto == "" {
		hr.Proto = "HTTP/1.1"
	}
	if hr.Header == nil {
		hr.Header = http.Header{}
	}
	return hr
}

// needsRawPath reports whether the URI's path holds an escape (%) that a
// handler may need to see as written (url.URL.RawPath).
func needsRawPath(uri string) bool {
	for i := 0; i < len(uri); i++ {
		switch uri[i] {
		case '%':
			return true
		case '?':
			return false
		}
	}
	return false
}

// responseWriter buffers the handler's response; guests answer in one piece.
type responseWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sets the status the first time it is called with a final
// one. Informational statuses (1xx, such as 103 Early Hints) are ignored:
// a function answers in one piece, so there is nothing to send ahead, and
// the final status still follows, as with net/http.
func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 && !informational(status) {
		w.status = status
	}
}

// informational reports a 1xx status, which cannot end a response.
func informational(status int) bool { return status >= 100 && status <= 199 }

// finalStatus is the status a response goes out with, in both handler
// styles: 200 when the handler set none, 500 (with a line on stderr) when
// it set one outside 200-599.
func finalStatus(status int) int {
	switch {
	case status == 0:
		return http.StatusOK
	case status < 200 || status > 599:
		fmt.Fprintf(os.Stderr, "gojinn: handler wrote status %d; sending 500\n", status)
		return http.StatusInternalServerError
	}
	return status
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// WriteString implements io.StringWriter, so io.WriteString and fmt need
// no conversion to []byte.
func (w *responseWriter) WriteString(s string) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.WriteString(s)
}

// Flush implements http.Flusher; the body is sent when the handler returns.
func (w *responseWriter) Flush() {}

// reset empties w for the next request, keeping the header map and the
// body's storage.
func (w *responseWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

// finish returns the response the handler wrote. Its header map and body
// alias w.
func (w *responseWriter) finish() protocol.Response {
	status := finalStatus(w.status)
	if w.body.Len() > 0 && w.header.Get("Content-Type") == "" {
		w.header.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
	}
	return protocol.Response{Status: status, Headers: w.header, Body: w.body.Bytes()}
}
