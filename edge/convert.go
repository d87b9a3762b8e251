package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Invoker runs a function; *runtime.Engine satisfies it.
type Invoker interface {
	Invoke(ctx context.Context, function string, req *protocol.Request) (*runtime.Result, error)
}

// ToRequest reads r (its body capped at maxBody bytes) into a protocol
// request with a fresh request id.
func ToRequest(r *http.Request, maxBody int64) (*protocol.Request, error) {
	return toRequest(r, maxBody, nil, newRequestID())
}

// toRequest is ToRequest with the body's buffers charged to acct (nil:
// not charged) and id as the request id.
func toRequest(r *http.Request, maxBody int64, acct *bodyAccount, id string) (*protocol.Request, error) {
	body, err := readBody(r.Body, r.ContentLength, maxBody, acct)
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
		RequestID:   id,
		TraceParent: r.Header.Get("Traceparent"),
	}, nil
}

// errBodyLength marks a body that does not match its Content-Length.
var errBodyLength = errors.New("Content-Length mismatch")

// bodyProbes are the buffers readBody reads a body of unknown length into
// first: most such bodies are empty (an HTTP/3 GET has no Content-Length),
// and finding that out should not allocate.
var bodyProbes = sync.Pool{New: func() any { return new([512]byte) }}

// readBody reads a request body of contentLength bytes (-1: unknown), at
// most maxBody bytes; a longer one is an *http.MaxBytesError. An empty body
// is nil. Buffers grow with the bytes that arrive, whatever the client
// declared, and each is charged to acct first (errBodyMemory when the
// node's budget is spent).
func readBody(body io.Reader, contentLength, maxBody int64, acct *bodyAccount) ([]byte, error) {
	if body == nil || body == http.NoBody || contentLength == 0 {
		// A server request with ContentLength 0 has no body.
		return nil, nil
	}
	if contentLength > maxBody {
		return nil, &http.MaxBytesError{Limit: maxBody}
	}
	if contentLength > 0 {
		return readDeclared(body, contentLength, acct)
	}
	probe := bodyProbes.Get().(*[512]byte)
	var n int
	var err error
	for n == 0 && err == nil {
		n, err = body.Read(probe[:])
	}
	if n == 0 {
		bodyProbes.Put(probe)
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	if int64(n) > maxBody {
		bodyProbes.Put(probe)
		return nil, &http.MaxBytesError{Limit: maxBody}
	}
	if !acct.hold(4096) {
		bodyProbes.Put(probe)
		return nil, errBodyMemory
	}
	b := append(make([]byte, 0, 4096), probe[:n]...)
	bodyProbes.Put(probe)
	for err == nil {
		if len(b) == cap(b) {
			// Double, but never past one byte over the limit.
			next := min(2*int64(cap(b)), maxBody+1)
			if !acct.hold(next) {
				return nil, errBodyMemory
			}
			b = append(make([]byte, 0, next), b...)
		}
		n, err = body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > maxBody {
			return nil, &http.MaxBytesError{Limit: maxBody}
		}
	}
	if err != io.EOF {
		return nil, err
	}
	return b, nil
}

// declaredBodyBuffer is the most readDeclared allocates before any byte
// of a body arrives: a Content-Length is a claim, and a client that
// declares 10 MiB and sends nothing must not cost the node 10 MiB (per
// request, and an HTTP/2 or HTTP/3 connection carries up to
// MaxConcurrentStreams of them).
const declaredBodyBuffer = 64 << 10

// readDeclared reads a body whose Content-Length is n > 0 (at most the
// caller's limit): exactly n bytes, or an error. The buffer starts at
// min(n+1, declaredBodyBuffer) bytes, so small bodies cost one
// allocation, and doubles as it fills, never past n+1.
func readDeclared(body io.Reader, n int64, acct *bodyAccount) ([]byte, error) {
	want := n + 1 // one byte more than declared tells a longer body from an exact one
	if !acct.hold(min(want, declaredBodyBuffer)) {
		return nil, errBodyMemory
	}
	buf := make([]byte, 0, min(want, declaredBodyBuffer))
	var err error
	for int64(len(buf)) < want && err == nil {
		if len(buf) == cap(buf) {
			next := min(want, 2*int64(cap(buf)))
			if !acct.hold(next) {
				return nil, errBodyMemory
			}
			buf = append(make([]byte, 0, next), buf...)
		}
		var m int
		m, err = body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
	}
	got := int64(len(buf))
	switch {
	case got > n:
		return nil, fmt.Errorf("%w: the body is longer than its Content-Length of %d bytes", errBodyLength, n)
	case got == n && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)):
		return buf[:got:got], nil
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: the body ended after %d of its %d bytes (Content-Length): %w", errBodyLength, got, n, io.ErrUnexpectedEOF)
	default:
		return nil, err
	}
}

// WriteResponse writes a guest's response to r to w, with a Date header
// unless the guest set one and with the node's Content-Length, and returns
// the error of writing the body (a write the server buffers fails only
// after the handler returns, so nil does not promise delivery).
// Connection-specific headers the guest set (connectionHeader, and the
// names its Connection header lists) are dropped: the edge owns its
// connections, HTTP/2 and HTTP/3 forbid them (an HTTP/3 client refuses
// such a response, browsers an HTTP/2 one), and over HTTP/1.1 they would
// switch the framing (Transfer-Encoding) or close a connection the node
// keeps.
//
// The exceptions to the node's Content-Length: a 1xx, 204 or 304 goes out
// without a body or a length, and the answer to a HEAD request with no
// body keeps a valid Content-Length the guest set, the length a GET would
// have had (RFC 9110 section 9.3.2), and has none otherwise.
func WriteResponse(w http.ResponseWriter, r *http.Request, resp *protocol.Response) error {
	h := w.Header()
	if resp.Headers == nil && len(resp.Fields) <= maxScannedFields {
		copyFields(h, resp.Fields)
	} else {
		copyHeaders(h, resp.HeaderMap())
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = responseDate.get(time.Now())
	}
	status := resp.StatusOrDefault()
	switch {
	case status == http.StatusResetContent:
		// 205 must not carry content (RFC 9110 section 15.3.6): a body
		// the guest wrote is dropped, and the length says so.
		h["Content-Length"] = contentLength(0)
		w.WriteHeader(status)
		return nil
	case status < 200 || status == http.StatusNoContent || status == http.StatusNotModified:
		// These carry no content (RFC 9110 sections 15.2, 15.3.5 and
		// 15.4.5): a body the guest wrote is dropped, and so is a
		// Content-Length it set. 1xx and 204 must not have one (RFC
		// 9110 section 8.6), net/http drops a 304's over HTTP/1.1 (so
		// the other protocols do the same), and over HTTP/2 a length
		// without its bytes broke the response.
		delete(h, "Content-Length")
		w.WriteHeader(status)
		return nil
	case r.Method == http.MethodHead && len(resp.Body) == 0:
		// A missing or malformed length is left out rather than
		// replaced by 0, which would announce an empty representation;
		// nil, not a delete, stops quic-go from adding that 0.
		if !validContentLength(h["Content-Length"]) {
			h["Content-Length"] = nil
		}
	default:
		h["Content-Length"] = contentLength(len(resp.Body))
	}
	w.WriteHeader(status)
	if _, err := w.Write(resp.Body); err != nil {
		return fmt.Errorf("writing the response body: %w", err)
	}
	return nil
}

// validContentLength reports whether vals is one Content-Length value: a
// non-negative decimal number (RFC 9110 section 8.6) that fits an int64.
func validContentLength(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	_, err := strconv.ParseUint(vals[0], 10, 63)
	return err == nil
}

// copyHeaders copies a guest's headers into h: each name's values replace
// what h had, except connection-specific ones (connectionHeader), which are
// left out along with the names the guest's Connection header lists.
func copyHeaders(h, guest http.Header) {
	listed := false
	for name, vals := range guest {
		if connectionHeader(name) {
			listed = listed || name == "Connection"
			continue
		}
		h[name] = trimValues(vals)
	}
	if listed {
		for _, v := range guest["Connection"] {
			dropListed(h, v, func(name string) bool { return guest[name] != nil })
		}
	}
}

// maxScannedFields is the most header fields copyFields takes: it looks
// for repeated names by scanning, and a guest's response may carry
// thousands of fields, which go through a map instead.
const maxScannedFields = 32

// copyFields is copyHeaders for headers as fields (canonical names, in
// message order; at most maxScannedFields). The values of all the names
// share one allocation.
func copyFields(h http.Header, fields []protocol.HeaderField) {
	var vals []string
	listed := false
	for i, f := range fields {
		if connectionHeader(f.Name) {
			listed = listed || f.Name == "Connection"
			continue
		}
		if vals == nil {
			vals = make([]string, len(fields))
		}
		vals[i] = strings.Trim(f.Value, " \t")
		if seen(fields[:i], f.Name) {
			h[f.Name] = append(h[f.Name], vals[i])
		} else {
			h[f.Name] = vals[i : i+1 : i+1] // replaces what h had
		}
	}
	if listed {
		for _, f := range fields {
			if f.Name == "Connection" {
				dropListed(h, f.Value, func(name string) bool { return seen(fields, name) })
			}
		}
	}
}

// trimValues returns vals without the spaces and tabs around each value
// (RFC 9110 section 5.5: they are not part of a field value, and HTTP/2
// and HTTP/3 peers refuse a field that has them). It copies only when a
// value changes.
func trimValues(vals []string) []string {
	for i, v := range vals {
		if t := strings.Trim(v, " \t"); len(t) != len(v) {
			out := make([]string, len(vals))
			copy(out, vals[:i])
			for j := i; j < len(vals); j++ {
				out[j] = strings.Trim(vals[j], " \t")
			}
			return out
		}
	}
	return vals
}

// seen reports whether a field of fields is named name.
func seen(fields []protocol.HeaderField, name string) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

// dropListed deletes from h the names listed in a Connection header value
// that the guest set (fromGuest): the node's own (Alt-Svc) stay.
func dropListed(h http.Header, connection string, fromGuest func(string) bool) {
	for _, name := range strings.Split(connection, ",") {
		if k := http.CanonicalHeaderKey(strings.TrimSpace(name)); fromGuest(k) && !connectionHeader(k) {
			delete(h, k)
		}
	}
}

// connectionHeader reports the canonical header names that describe a
// connection rather than a response (RFC 9110 section 7.6.1, RFC 9113
// section 8.2.2, RFC 9114 section 4.2); Trailer, as guest responses have
// no trailers to announce; and Alt-Svc, which the node sets to its own
// HTTP/3 endpoint: a function's would send clients elsewhere for every
// function of the origin.
func connectionHeader(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Alt-Svc":
		return true
	}
	return false
}

// smallLengths caches the Content-Length header values of bodies shorter
// than 1 KiB, filled as they are first needed: most function responses are
// small, and a fresh value is an allocation or two per response. Values are
// shared between responses and never modified.
var smallLengths [1024]atomic.Pointer[[]string]

// contentLength returns the Content-Length header value for n bytes.
func contentLength(n int) []string {
	if n >= len(smallLengths) {
		return []string{strconv.Itoa(n)}
	}
	if v := smallLengths[n].Load(); v != nil {
		return *v
	}
	v := []string{strconv.Itoa(n)} // capacity 1: an append copies
	smallLengths[n].Store(&v)
	return v
}

// responseDate is the Date header of responses. The HTTP/2 and HTTP/3
// servers format the time for every response that has none, an
// allocation each; one value per second is enough (RFC 9110 asks for
// seconds).
var responseDate dateCache

// dateCache holds the Date header value of the current second. Values
// are shared between responses and never modified.
type dateCache struct{ v atomic.Pointer[dateValue] }

type dateValue struct {
	sec int64
	hdr []string
}

// get returns the header value for now.
func (c *dateCache) get(now time.Time) []string {
	sec := now.Unix()
	if d := c.v.Load(); d != nil && d.sec == sec {
		return d.hdr
	}
	d := &dateValue{sec: sec, hdr: []string{now.UTC().Format(http.TimeFormat)}}
	c.v.Store(d)
	return d.hdr // capacity 1: an append copies instead of sharing
}

// newRequestID returns 96 random bits in hex. The bits come from
// math/rand/v2's global generator (ChaCha8 per thread, seeded by the OS):
// unpredictable and unique in practice, which is all a request id needs;
// crypto/rand cost ~1 µs per request under load.
func newRequestID() string {
	const digits = "0123456789abcdef"
	var b [24]byte
	hi, lo := rand.Uint64(), rand.Uint32()
	for i := range 16 {
		b[i] = digits[hi>>(60-4*i)&0xf]
	}
	for i := range 8 {
		b[16+i] = digits[lo>>(28-4*i)&0xf]
	}
	return string(b[:])
}
