package gojinn

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

var handler http.Handler = http.NotFoundHandler()

// Handle registers h as the function's handler. Call it from init so that
// reactor builds, whose main never runs, see it too.
func Handle(h http.Handler) {
	if h == nil {
		panic("gojinn: Handle called with a nil handler")
	}
	handler = h
}

// HandleFunc registers f as the function's handler.
func HandleFunc(f func(http.ResponseWriter, *http.Request)) { Handle(http.HandlerFunc(f)) }

// Run serves one request as a WASI command: it reads the request JSON from
// stdin, calls the handler and writes the response JSON to stdout. Call it
// from main. A request that cannot be decoded ends the process with exit
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
	out, err := protocol.MarshalResponseJSON(serve(req))
	if err != nil {
		fatalf("encode response: %v", err)
	}
	if _, err := os.Stdout.Write(out); err != nil {
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

// serve runs the handler for one request. A panic in the handler becomes a
// 500 response and a stack trace on stderr, so the instance stays usable.
func serve(req *protocol.Request) (resp *protocol.Response) {
	w := &responseWriter{header: make(http.Header, 4)}
	current = req
	defer func() {
		current = nil
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "gojinn: handler panic: %v\n%s", v, debug.Stack())
			resp = &protocol.Response{Status: http.StatusInternalServerError,
				Headers: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
				Body:    []byte("internal error in function\n")}
		}
	}()
	handler.ServeHTTP(w, toHTTP(req))
	return w.response()
}

// toHTTP builds the *http.Request a handler sees. It avoids reparsing the
// URI when the host sent the decoded path, and allocates no body reader for
// an empty body.
func toHTTP(req *protocol.Request) *http.Request {
	u := &url.URL{Path: req.Path, RawQuery: req.RawQuery}
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
	hr := &http.Request{
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
	if len(req.Body) > 0 {
		hr.Body = io.NopCloser(bytes.NewReader(req.Body))
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

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// Flush implements http.Flusher; the body is sent when the handler returns.
func (w *responseWriter) Flush() {}

func (w *responseWriter) response() *protocol.Response {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	if status < 100 || status > 599 {
		fmt.Fprintf(os.Stderr, "gojinn: handler wrote status %d; sending 500\n", status)
		status = http.StatusInternalServerError
	}
	if w.header.Get("Content-Type") == "" && w.body.Len() > 0 {
		w.header.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
	}
	return &protocol.Response{Status: status, Headers: w.header, Body: w.body.Bytes()}
}
