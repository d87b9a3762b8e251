package gojinn

import (
	"bytes"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// A raw handler serves requests without net/http's types. The net/http path
// builds an *http.Request, its URL and a header map for every request, and
// in a Go guest under WebAssembly that costs several times more than the
// rest of a pooled invocation (docs/benchmarks.md). A raw handler gets the
// request's fields as the host sent them and writes into a response that is
// reused from request to request: one allocation per request (the string
// backing the request's fields) when the handler itself allocates nothing.

var rawHandler func(*RawResponse, *RawRequest)

// HandleRaw registers f as the function's handler in place of a net/http
// handler (the last of Handle, HandleFunc and HandleRaw called wins). Call
// it from init. w and r are reused for the next request: f must not keep
// them, or r.Body(), after it returns; the strings r returns may be kept.
func HandleRaw(f func(w *RawResponse, r *RawRequest)) {
	if f == nil {
		panic("gojinn: HandleRaw called with a nil handler")
	}
	rawHandler = f
}

// RawRequest is a request as a raw handler sees it.
type RawRequest struct {
	req protocol.Request
	hdr []protocol.HeaderField
}

// Method returns the HTTP method, e.g. "GET".
func (r *RawRequest) Method() string { return r.req.Method }

// URI returns the request target as received: the path and, when there is
// one, "?" and the raw query.
func (r *RawRequest) URI() string { return r.req.URI }

// Path returns the decoded URL path, e.g. "/api/users".
func (r *RawRequest) Path() string { return r.req.Path }

// RawQuery returns the query string without the "?", still escaped.
func (r *RawRequest) RawQuery() string { return r.req.RawQuery }

// Host returns the Host header (HTTP/1) or :authority (HTTP/2 and 3).
func (r *RawRequest) Host() string { return r.req.Host }

// Scheme returns "http" or "https".
func (r *RawRequest) Scheme() string { return r.req.Scheme }

// Proto returns "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
func (r *RawRequest) Proto() string { return r.req.Proto }

// RemoteAddr returns the client's address as host:port.
func (r *RawRequest) RemoteAddr() string { return r.req.RemoteAddr }

// RequestID returns the id the node gave the request.
func (r *RawRequest) RequestID() string { return r.req.RequestID }

// TraceParent returns the W3C traceparent of the invocation's span, empty
// when tracing is off.
func (r *RawRequest) TraceParent() string { return r.req.TraceParent }

// Function returns the name of the function being invoked.
func (r *RawRequest) Function() string { return r.req.Function }

// FunctionVersion returns the deployed version of the function.
func (r *RawRequest) FunctionVersion() string { return r.req.FunctionVersion }

// Body returns the request body. It is valid until the handler returns:
// copy what you keep.
func (r *RawRequest) Body() []byte { return r.req.Body }

// Header returns the first value of the named header, "" when there is
// none. The name is matched without regard to case.
func (r *RawRequest) Header(name string) string {
	for _, f := range r.hdr {
		if sameName(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// HeaderValues returns every value of the named header, in order, nil when
// there is none. The name is matched without regard to case.
func (r *RawRequest) HeaderValues(name string) []string {
	var vals []string
	for _, f := range r.hdr {
		if sameName(f.Name, name) {
			vals = append(vals, f.Value)
		}
	}
	return vals
}

// Headers yields every header line as a canonical name and one value, in
// the order the host sent them (sorted by name).
func (r *RawRequest) Headers() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, f := range r.hdr {
			// Names are decoded as sent (protocol.DecodeRequestWireFields);
			// an already canonical one comes back without a copy.
			if !yield(http.CanonicalHeaderKey(f.Name), f.Value) {
				return
			}
		}
	}
}

// Query returns the first value of the query parameter key, unescaped, ""
// when there is none. Like url.ParseQuery, it ignores pairs that are not
// validly escaped.
func (r *RawRequest) Query(key string) string {
	v, _ := r.QueryOK(key)
	return v
}

// QueryOK is Query that also reports whether the parameter was present.
func (r *RawRequest) QueryOK(key string) (string, bool) {
	q := r.req.RawQuery
	for q != "" {
		// One pass over the pair finds its end, its first '=', and whether
		// it needs unescaping or holds a ';' (url.ParseQuery refuses those
		// pairs): under WebAssembly a strings call per question cost more
		// than the rest of a small handler.
		end, eq, escaped, semi := len(q), -1, false, false
	scan:
		for i := 0; i < len(q); i++ {
			switch q[i] {
			case '&':
				end = i
				break scan
			case '=':
				if eq < 0 {
					eq = i
				}
			case '%', '+':
				escaped = true
			case ';':
				semi = true
			}
		}
		pair := q[:end]
		q = q[min(end+1, len(q)):]
		if pair == "" || semi {
			continue
		}
		k, v := pair, ""
		if eq >= 0 {
			k, v = pair[:eq], pair[eq+1:]
		}
		if !escaped {
			if k == key {
				return v, true
			}
			continue
		}
		k, ok := unescapeQuery(k)
		if !ok || k != key {
			continue
		}
		if v, ok = unescapeQuery(v); ok {
			return v, true
		}
	}
	return "", false
}

// unescapeQuery unescapes a query component, allocating only when it holds
// an escape.
func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// HTTPRequest builds the *http.Request the net/http path would have given
// the handler, for code that needs one. It costs what HandleRaw saves.
func (r *RawRequest) HTTPRequest() *http.Request {
	ex := new(exchange)
	ex.req = r.req
	ex.req.Body = bytes.Clone(r.req.Body)
	ex.req.Headers = make(http.Header, len(r.hdr))
	for _, f := range r.hdr {
		name := http.CanonicalHeaderKey(f.Name)
		ex.req.Headers[name] = append(ex.req.Headers[name], f.Value)
	}
	return ex.toHTTP()
}

// RawResponse is the response a raw handler writes. It implements
// io.Writer and io.StringWriter, so fmt.Fprintf and io.Copy write the
// body. It is reused for the next request: do not keep it.
type RawResponse struct {
	status int
	hdr    []protocol.HeaderField
	body   bytes.Buffer
}

// WriteHeader sets the status code. As with net/http, the first call with
// a final status wins, and a response with no call is 200. Informational
// statuses (1xx) are ignored: the response goes out in one piece.
func (w *RawResponse) WriteHeader(status int) {
	if w.status == 0 && !informational(status) {
		w.status = status
	}
}

// SetHeader sets the named header to value, replacing any values it had.
// The name is matched without regard to case.
func (w *RawResponse) SetHeader(name, value string) {
	w.DelHeader(name)
	w.hdr = append(w.hdr, protocol.HeaderField{Name: name, Value: value})
}

// AddHeader adds value to the named header.
func (w *RawResponse) AddHeader(name, value string) {
	w.hdr = append(w.hdr, protocol.HeaderField{Name: name, Value: value})
}

// DelHeader removes every value of the named header. The name is matched
// without regard to case.
func (w *RawResponse) DelHeader(name string) {
	kept := w.hdr[:0]
	for _, f := range w.hdr {
		if !sameName(f.Name, name) {
			kept = append(kept, f)
		}
	}
	clear(w.hdr[len(kept):])
	w.hdr = kept
}

// Header returns the first value of the named response header set so far.
func (w *RawResponse) Header(name string) string {
	for _, f := range w.hdr {
		if sameName(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Write appends p to the body. It never fails.
func (w *RawResponse) Write(p []byte) (int, error) { return w.body.Write(p) }

// WriteString appends s to the body. It never fails.
func (w *RawResponse) WriteString(s string) (int, error) { return w.body.WriteString(s) }

// maxKeepFields bounds the header fields' storage kept for the next
// request, as maxKeep bounds the body's.
const maxKeepFields = 1024

// reset empties w for the next request, keeping its storage unless a
// request grew it past the bounds.
func (w *RawResponse) reset() {
	w.status = 0
	if cap(w.hdr) > maxKeepFields {
		w.hdr = make([]protocol.HeaderField, 0, 8)
	}
	clear(w.hdr)
	w.hdr = w.hdr[:0]
	w.body.Reset()
}

// finish settles the status and Content-Type the way the net/http path
// does: no status is 200, a status outside 200-599 becomes 500, and a body
// without a Content-Type gets a sniffed one.
func (w *RawResponse) finish() {
	w.status = finalStatus(w.status)
	if w.body.Len() > 0 && w.Header("Content-Type") == "" {
		w.hdr = append(w.hdr, protocol.HeaderField{Name: "Content-Type", Value: http.DetectContentType(w.body.Bytes())})
	}
}

// serveRaw calls the raw handler with r and leaves the response in w. A
// panic replaces whatever the handler wrote with a 500 response.
func serveRaw(w *RawResponse, r *RawRequest) {
	current = &r.req
	defer func() {
		current = nil
		if v := recover(); v != nil {
			fmt.Fprintf(os.Stderr, "gojinn: handler panic: %v\n%s", v, debug.Stack())
			w.reset()
			w.hdr = append(w.hdr, protocol.HeaderField{Name: "Content-Type", Value: "text/plain; charset=utf-8"})
			w.status = http.StatusInternalServerError
			w.body.WriteString("internal error in function\n")
		}
	}()
	rawHandler(w, r)
}

// The raw path's request and response, reused from request to request (and
// part of the post-init snapshot in pooled mode with reset).
var (
	rawReq  = &RawRequest{hdr: make([]protocol.HeaderField, 0, 16)}
	rawResp = &RawResponse{hdr: make([]protocol.HeaderField, 0, 8)}
)

// handleRawWire is handleWire for a raw handler.
func handleRawWire(in []byte) []byte {
	r, w := rawReq, rawResp
	if cap(r.hdr) > maxKeepFields {
		r.hdr = make([]protocol.HeaderField, 0, 16)
	}
	clear(r.hdr)
	hdr, err := protocol.DecodeRequestWireFields(&r.req, r.hdr[:0], in)
	if err != nil {
		return encodeError("decode request: " + err.Error())
	}
	r.hdr = hdr
	w.reset()
	serveRaw(w, r)
	r.req.Body = nil // it aliases the request buffer
	w.finish()
	outBuf, err = protocol.AppendResponseWireFields(outBuf[:0], w.status, w.hdr, w.body.Bytes())
	if w.body.Cap() > maxKeep {
		w.body = bytes.Buffer{}
	}
	if err != nil {
		return encodeError("encode response: " + err.Error())
	}
	return outBuf
}

// serveRawRequest serves a decoded request (command mode) with the raw
// handler.
func serveRawRequest(req *protocol.Request) *protocol.Response {
	r := &RawRequest{req: *req}
	names := make([]string, 0, len(req.Headers))
	for name := range req.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range req.Headers[name] {
			r.hdr = append(r.hdr, protocol.HeaderField{Name: name, Value: v})
		}
	}
	r.req.Headers = nil
	w := new(RawResponse)
	serveRaw(w, r)
	w.finish()
	resp := &protocol.Response{Status: w.status, Headers: make(http.Header, len(w.hdr)), Body: w.body.Bytes()}
	for _, f := range w.hdr {
		name := http.CanonicalHeaderKey(f.Name)
		resp.Headers[name] = append(resp.Headers[name], f.Value)
	}
	return resp
}

// sameName reports whether two header names are equal without regard to
// case. Header names are ASCII tokens (the host refuses others), so names
// of different lengths never match, and the common exact match needs no
// call: under WebAssembly the call is most of the cost.
func sameName(a, b string) bool {
	return len(a) == len(b) && (a == b || strings.EqualFold(a, b))
}
