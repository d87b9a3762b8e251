package protocol

import (
	"errors"
	"net/http"
)

// Version is the guest protocol version this package speaks.
const Version = 1

// Sentinel errors returned by the decoders. Every decode error wraps one of
// them, so callers can test with errors.Is.
var (
	// ErrMalformed means the input is not a well-formed request or response
	// in the format the decoder reads.
	ErrMalformed = errors.New("protocol: malformed message")
	// ErrUnsupportedVersion means the message names a protocol version this
	// package does not speak.
	ErrUnsupportedVersion = errors.New("protocol: unsupported version")
	// ErrInvalidStatus means a response carries a status outside 200-599:
	// a 1xx status is informational and cannot end a response.
	ErrInvalidStatus = errors.New("protocol: status out of range")
	// ErrTooLarge means a message exceeds a size limit: the size the
	// decoder was given, or for a response MaxResponseHeaderFields or
	// MaxResponseHeaderBytes.
	ErrTooLarge = errors.New("protocol: message too large")
)

// Request is the HTTP request a function receives.
type Request struct {
	// Method is the HTTP method, e.g. "GET".
	Method string
	// URI is the request target as received: path plus "?" and the raw
	// query when there is one.
	URI string
	// Path is the decoded URL path, e.g. "/api/users".
	Path string
	// RawQuery is the query string without the "?".
	RawQuery string
	// Headers holds the request headers with canonical names and every
	// value, in order.
	Headers http.Header
	// Body is the request body, any bytes.
	Body []byte
	// Host is the Host header (HTTP/1) or :authority (HTTP/2 and 3).
	Host string
	// Scheme is "http" or "https".
	Scheme string
	// Proto is "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
	Proto string
	// RemoteAddr is the client's address as host:port.
	RemoteAddr string
	// RequestID uniquely identifies the request on the node.
	RequestID string
	// TraceParent is the W3C traceparent of the span that invokes the
	// function, empty when tracing is off.
	TraceParent string
	// Function is the name of the function being invoked.
	Function string
	// FunctionVersion is the deployed version of the function.
	FunctionVersion string
}

// Response is what a function answers.
type Response struct {
	// Status is the HTTP status code, 200-599; 0 means 200. A 1xx status
	// is informational and cannot be a response's final status.
	Status int
	// Headers holds the response headers. DecodeResponseWireFields leaves
	// it nil and fills Fields instead.
	Headers http.Header
	// Fields holds the response headers as a list, names canonical, in
	// message order, when a decoder made one in place of Headers
	// (DecodeResponseWireFields): a host that copies them into an
	// http.ResponseWriter needs no map of its own. Encoders read it when
	// Headers is nil; HeaderMap gives a map either way.
	Fields []HeaderField
	// Body is the response body, any bytes.
	Body []byte
}

// HeaderMap returns r.Headers, or when it is nil a new map of r.Fields.
func (r *Response) HeaderMap() http.Header {
	if r.Headers != nil {
		return r.Headers
	}
	h := make(http.Header, len(r.Fields))
	if len(r.Fields) == 0 {
		return h
	}
	// The first value of every name shares one backing array.
	vals := make([]string, len(r.Fields))
	for i, f := range r.Fields {
		if prev, ok := h[f.Name]; ok {
			h[f.Name] = append(prev, f.Value)
			continue
		}
		vals[i] = f.Value
		h[f.Name] = vals[i : i+1 : i+1]
	}
	return h
}

// StatusOrDefault returns the response's status, 200 when unset.
func (r *Response) StatusOrDefault() int {
	if r.Status == 0 {
		return http.StatusOK
	}
	return r.Status
}

func validStatus(s int) bool { return s == 0 || (s >= 200 && s <= 599) }
