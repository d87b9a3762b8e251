package gojinn

import (
	"bytes"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// A raw handler serves requests without net/http's types. The net/http path
// builds an *http.Request, its URL and a header map for every request, and
// in a Go guest under WebAssembly that costs several times more than the
// rest of a pooled invocation (docs/benchmarks.md). A raw handler gets the
// request's fields as the host sent them, read in place, and writes into a
// response that is reused from request to request: when the handler itself
// allocates nothing, a request costs one allocation if the handler reads a
// field (the string behind every field) and none otherwise.

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

// RawRequest is a request as a raw handler sees it. It reads the request's
// wire form in place: the fields a handler asks for become strings, the
// others cost nothing, and the first string made copies the message once
// (a request whose handler reads only an absent query allocates nothing).
type RawRequest struct {
	msg []byte // the request's wire form; valid while the handler runs
	all string // msg as a string, made when a field is first read
	ix  protocol.RequestIndex
}

// reset points r at the wire form msg.
func (r *RawRequest) reset(msg []byte) error {
	r.msg, r.all = msg, ""
	if cap(r.ix.Headers) > maxKeepFields {
		r.ix.Headers = nil
	}
	return protocol.IndexRequestWire(&r.ix, msg)
}

// done empties r once its handler has returned.
func (r *RawRequest) done() {
	r.msg, r.all = nil, ""
	r.ix.Reset()
}

// str returns the bytes of s as a string sharing the request's one copy.
func (r *RawRequest) str(s protocol.Span) string {
	if s.End == s.Start {
		return ""
	}
	if r.all == "" {
		r.all = string(r.msg)
	}
	return r.all[s.Start:s.End]
}

// bytes returns the bytes of s in the message, without a copy.
func (r *RawRequest) bytes(s protocol.Span) []byte { return r.msg[s.Start:s.End:s.End] }

func (r *RawRequest) field(f protocol.Field) string { return r.str(r.ix.Fields[f]) }

// Method returns the HTTP method, e.g. "GET".
func (r *RawRequest) Method() string { return r.field(protocol.FieldMethod) }

// URI returns the request target as received: the path and, when there is
// one, "?" and the raw query.
func (r *RawRequest) URI() string { return r.field(protocol.FieldURI) }

// Path returns the decoded URL path, e.g. "/api/users".
func (r *RawRequest) Path() string { return r.field(protocol.FieldPath) }

// RawQuery returns the query string without the "?", still escaped.
func (r *RawRequest) RawQuery() string { return r.field(protocol.FieldRawQuery) }

// Host returns the Host header (HTTP/1) or :authority (HTTP/2 and 3).
func (r *RawRequest) Host() string { return r.field(protocol.FieldHost) }

// Scheme returns "http" or "https".
func (r *RawRequest) Scheme() string { return r.field(protocol.FieldScheme) }

// Proto returns "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
func (r *RawRequest) Proto() string { return r.field(protocol.FieldProto) }

// RemoteAddr returns the client's address as host:port.
func (r *RawRequest) RemoteAddr() string { return r.field(protocol.FieldRemoteAddr) }

// RequestID returns the id the node gave the request.
func (r *RawRequest) RequestID() string { return r.field(protocol.FieldRequestID) }

// TraceParent returns the W3C traceparent of the invocation's span, empty
// when tracing is off.
func (r *RawRequest) TraceParent() string { return r.field(protocol.FieldTraceParent) }

// Function returns the name of the function being invoked.
func (r *RawRequest) Function() string { return r.field(protocol.FieldFunction) }

// FunctionVersion returns the deployed version of the function.
func (r *RawRequest) FunctionVersion() string { return r.field(protocol.FieldFunctionVersion) }

// Body returns the request body. It is valid until the handler returns:
// copy what you keep.
func (r *RawRequest) Body() []byte {
	if r.ix.Body.End == r.ix.Body.Start {
		return nil
	}
	return r.bytes(r.ix.Body)
}

// Header returns the first value of the named header, "" when there is
// none. The name is matched without regard to case.
func (r *RawRequest) Header(name string) string {
	for _, f := range r.ix.Headers {
		if r.nameIs(f.Name, name) {
			return r.str(f.Value)
		}
	}
	return ""
}

// HeaderValues returns every value of the named header, in order, nil when
// there is none. The name is matched without regard to case.
func (r *RawRequest) HeaderValues(name string) []string {
	var vals []string
	for _, f := range r.ix.Headers {
		if r.nameIs(f.Name, name) {
			vals = append(vals, r.str(f.Value))
		}
	}
	return vals
}

// nameIs reports whether the header name at s is name, without regard to
// case.
func (r *RawRequest) nameIs(s protocol.Span, name string) bool {
	b := r.bytes(s)
	// string(b) in a comparison makes no copy.
	return len(b) == len(name) && (string(b) == name || strings.EqualFold(string(b), name))
}

// Headers yields every header line as a canonical name and one value, in
// the order the host sent them (sorted by name).
func (r *RawRequest) Headers() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, f := range r.ix.Headers {
			// An already canonical name comes back without a copy.
			if !yield(http.CanonicalHeaderKey(r.str(f.Name)), r.str(f.Value)) {
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
	q := r.RawQuery()
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
// While the handler runs, Info returns the protocol request behind the
// result.
func (r *RawRequest) HTTPRequest() *http.Request {
	ex := new(exchange)
	// The message was indexed, so it decodes; the copy of every field and
	// the body is the request's own.
	if err := protocol.DecodeRequestWireInto(&ex.req, r.msg, ex.vals[:]); err != nil {
		panic("gojinn: an indexed request does not decode: " + err.Error())
	}
	current = &ex.req
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
	if len(w.hdr) > 0 { // under WebAssembly even a call that finds nothing costs
		w.DelHeader(name)
	}
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
	for i := range w.hdr { // a few fields: cheaper than a call to clear
		w.hdr[i] = protocol.HeaderField{}
	}
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
	defer func() {
		current = nil
		if v := recover(); v != nil {
			logPanic(v)
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
	rawReq  = &RawRequest{ix: protocol.RequestIndex{Headers: make([]protocol.HeaderSpan, 0, 16)}}
	rawResp = &RawResponse{hdr: make([]protocol.HeaderField, 0, 8)}
)

// handleRawWire is handleWire for a raw handler.
func handleRawWire(in []byte) []byte {
	r, w := rawReq, rawResp
	if err := r.reset(in); err != nil {
		r.done()
		return encodeError("decode request: " + err.Error())
	}
	w.reset()
	serveRaw(w, r)
	// msg is the request buffer, which the next request overwrites: a
	// RawRequest kept past its handler (which the API forbids) reads
	// empty fields rather than another request's.
	r.done()
	w.finish()
	var err error
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
// handler, through the wire form the reactor path reads.
func serveRawRequest(req *protocol.Request) *protocol.Response {
	r := new(RawRequest)
	if err := r.reset(protocol.AppendRequestWire(nil, req)); err != nil {
		panic("gojinn: an encoded request does not index: " + err.Error())
	}
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
