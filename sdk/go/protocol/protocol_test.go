package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Equality used by the round-trip tests and the fuzz targets: a nil and an
// empty body are equal, and so are a nil and an empty header; a header name
// with no values is the same as an absent one.

func equalHeader(a, b http.Header) bool {
	for name, va := range a {
		if !slices.Equal(va, b[name]) {
			return false
		}
	}
	for name, vb := range b {
		if len(vb) > 0 && len(a[name]) == 0 {
			return false
		}
	}
	return true
}

func equalRequest(a, b *Request) bool {
	return a.Method == b.Method &&
		a.URI == b.URI &&
		a.Path == b.Path &&
		a.RawQuery == b.RawQuery &&
		equalHeader(a.Headers, b.Headers) &&
		bytes.Equal(a.Body, b.Body) &&
		a.Host == b.Host &&
		a.Scheme == b.Scheme &&
		a.Proto == b.Proto &&
		a.RemoteAddr == b.RemoteAddr &&
		a.RequestID == b.RequestID &&
		a.TraceParent == b.TraceParent &&
		a.Function == b.Function &&
		a.FunctionVersion == b.FunctionVersion
}

// equalResponse compares a and b; with anyZero set a status of 0 equals 200
// (encoders write 0 as 200).
func equalResponse(a, b *Response, anyZero bool) bool {
	sa, sb := a.Status, b.Status
	if anyZero {
		sa, sb = a.StatusOrDefault(), b.StatusOrDefault()
	}
	return sa == sb && equalHeader(a.Headers, b.Headers) && bytes.Equal(a.Body, b.Body)
}

// cloneRequest returns a deep copy of r that shares no memory with it.
func cloneRequest(r *Request) *Request {
	c := *r
	c.Headers = cloneHeader(r.Headers)
	c.Body = bytes.Clone(r.Body)
	for _, p := range []*string{&c.Method, &c.URI, &c.Path, &c.RawQuery, &c.Host, &c.Scheme, &c.Proto,
		&c.RemoteAddr, &c.RequestID, &c.TraceParent, &c.Function, &c.FunctionVersion} {
		*p = strings.Clone(*p)
	}
	return &c
}

func cloneResponse(r *Response) *Response {
	return &Response{Status: r.Status, Headers: cloneHeader(r.Headers), Body: bytes.Clone(r.Body)}
}

func cloneHeader(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	c := make(http.Header, len(h))
	for name, vals := range h {
		cv := make([]string, len(vals))
		for i, v := range vals {
			cv[i] = strings.Clone(v)
		}
		c[strings.Clone(name)] = cv
	}
	return c
}

// short renders a body for failure messages.
func short(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func dumpRequest(r *Request) string {
	c := *r
	c.Body = nil
	return fmt.Sprintf("%+v body=%s", c, short(r.Body))
}

func dumpResponse(r *Response) string {
	return fmt.Sprintf("{Status:%d Headers:%v} body=%s", r.Status, r.Headers, short(r.Body))
}

// wantErr fails t unless err wraps target.
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one wrapping %v", err, target)
	}
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// allBytes is every byte value once: not valid UTF-8.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

const mib = 1 << 20

type requestCase struct {
	name string
	req  *Request
}

// requestCases are requests every encoder must carry unchanged. Their
// header names are canonical and their paths match their URIs, as the host
// sends them.
func requestCases() []requestCase {
	return []requestCase{
		{"zero", &Request{}},
		{"minimal GET", &Request{Method: "GET", URI: "/", Path: "/"}},
		{"typical GET", benchRequest()},
		{"golden", goldenRequest()},
		{"binary body", &Request{Method: "POST", URI: "/upload", Path: "/upload",
			Headers: http.Header{"Content-Type": {"application/octet-stream"}}, Body: allBytes()}},
		{"lone invalid byte", &Request{Method: "POST", URI: "/b", Path: "/b", Body: []byte{0xff}}},
		{"NUL bytes are valid UTF-8", &Request{Method: "POST", Body: []byte("a\x00b\x00")}},
		{"body that looks like base64", &Request{Method: "POST", Body: []byte("aGk=")}},
		{"JSON body", &Request{Method: "POST", URI: "/api", Path: "/api",
			Headers: http.Header{"Content-Type": {"application/json"}},
			Body:    []byte(`{"html":"<b>&amp;</b>","line":"a\u2028b","quote":"\""}` + "\n")}},
		{"empty body", &Request{Method: "POST", URI: "/e", Path: "/e", Body: []byte{},
			Headers: http.Header{"Content-Length": {"0"}}}},
		{"multi-valued headers", &Request{Method: "GET", URI: "/m", Path: "/m", Headers: http.Header{
			"Accept":          {"text/html", "application/json;q=0.9", "*/*;q=0.1"},
			"Cookie":          {"a=1", "b=2"},
			"X-Empty":         {""},
			"X-Empty-Between": {"x", "", "y"},
			"X-Single":        {"only"},
		}}},
		{"multi-valued query", &Request{Method: "GET",
			URI:  "/search?q=go+wasm&tag=a&tag=b&tag=&empty&enc=%26%3D%20",
			Path: "/search", RawQuery: "q=go+wasm&tag=a&tag=b&tag=&empty&enc=%26%3D%20"}},
		{"unicode", &Request{Method: "PUT",
			URI:  "/h%C3%A9llo/%E4%B8%96%E7%95%8C?na%C3%AFve=%F0%9F%8E%89",
			Path: "/héllo/世界", RawQuery: "na%C3%AFve=%F0%9F%8E%89",
			Headers:  http.Header{"X-Name": {"Zoë Ünïcødé 日本語 🎉"}},
			Body:     []byte("日本語のテキスト 🎉 Ελληνικά"),
			Host:     "xn--bcher-kva.example",
			Function: "grüße", FunctionVersion: "v1-ß"}},
		{"escaped path", &Request{Method: "GET", URI: "/files/a%20b%2Fc", Path: "/files/a b/c"}},
		{"large binary body", &Request{Method: "POST", URI: "/big", Path: "/big",
			Headers: http.Header{"Content-Type": {"application/octet-stream"}}, Body: randomBytes(mib, 1)}},
		{"large text body", &Request{Method: "POST", URI: "/big", Path: "/big",
			Headers: http.Header{"Content-Type": {"text/plain"}}, Body: bytes.Repeat([]byte("0123456789abcdé\n"), mib/17)}},
		{"many headers", &Request{Method: "GET", URI: "/h", Path: "/h", Headers: manyHeaders(100)}},
		{"long header value", &Request{Method: "GET", Headers: http.Header{
			"Cookie": {strings.Repeat("k=v; ", 2000)}}}},
	}
}

func manyHeaders(n int) http.Header {
	h := make(http.Header, n)
	for i := range n {
		h[fmt.Sprintf("X-Header-%03d", i)] = []string{fmt.Sprint(i), fmt.Sprint(-i)}
	}
	return h
}

type responseCase struct {
	name string
	resp *Response
}

// responseCases are responses every encoder must carry unchanged, but for
// a status of 0, which becomes 200. Their header names are canonical.
func responseCases() []responseCase {
	return []responseCase{
		{"zero", &Response{}},
		{"status only", &Response{Status: 204}},
		{"lowest status", &Response{Status: 200}},
		{"highest status", &Response{Status: 599}},
		{"typical", benchResponse()},
		{"golden", goldenResponse()},
		{"binary body", &Response{Status: 200, Body: allBytes(),
			Headers: http.Header{"Content-Type": {"image/png"}}}},
		{"empty body", &Response{Status: 200, Body: []byte{}, Headers: http.Header{"Content-Length": {"0"}}}},
		{"multi-valued headers", &Response{Status: 302, Headers: http.Header{
			"Location":   {"/next"},
			"Set-Cookie": {"a=1; Path=/", "b=2; HttpOnly", "c=3"},
			"Vary":       {"Accept", "Accept-Encoding"},
			"X-Empty":    {""},
		}}},
		{"unicode", &Response{Status: 200, Headers: http.Header{"X-Greeting": {"¡Hola, 世界! 🎉"}},
			Body: []byte("<p>Grüße aus Köln — 日本語</p>")}},
		{"tab in value", &Response{Status: 200, Headers: http.Header{"X-Tab": {"a\tb"}}}},
		{"token punctuation in name", &Response{Status: 200, Headers: http.Header{"X-A!#$%&'*+.^_`|~": {"ok"}}}},
		{"server error", &Response{Status: 503, Headers: http.Header{"Retry-After": {"120"}},
			Body: []byte("try later\n")}},
		{"large binary body", &Response{Status: 200, Body: randomBytes(mib, 2)}},
		{"large text body", &Response{Status: 200, Body: bytes.Repeat([]byte("<li>item</li>\n"), mib/14)}},
		{"many headers", &Response{Status: 200, Headers: manyHeaders(100)}},
	}
}

func TestStatusOrDefault(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 200}, {200, 200}, {404, 404}, {100, 100}} {
		r := &Response{Status: tc.in}
		if got := r.StatusOrDefault(); got != tc.want {
			t.Errorf("StatusOrDefault() with Status %d = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestValidStatus(t *testing.T) {
	for s := -1000; s <= 1000; s++ {
		want := s == 0 || (s >= 200 && s <= 599) // 1xx is informational, never final
		if got := validStatus(s); got != want {
			t.Errorf("validStatus(%d) = %v, want %v", s, got, want)
		}
	}
}

func TestValidHeaderName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"Content-Type", true},
		{"x", true},
		{"X-A!#$%&'*+.^_`|~09", true},
		{"", false},
		{"Bad Name", false},
		{" X", false},
		{"X:", false},
		{"X\r", false},
		{"X\x00", false},
		{"Ünï", false},
		{"X(", false},
		{"X\"", false},
		{"X\x7f", false},
	} {
		if got := validHeaderName(tc.name); got != tc.ok {
			t.Errorf("validHeaderName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		if got := validHeaderName([]byte(tc.name)); got != tc.ok {
			t.Errorf("validHeaderName([]byte(%q)) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestValidHeaderValue(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"text/html; charset=utf-8", true},
		{"a\tb", true},
		{"Grüße \xff obs-text", true},
		{"a\rb", false},
		{"a\nb", false},
		{"a\r\nSet-Cookie: x=1", false},
		{"a\x00", false},
		{"\n", false},
		{"a\x01b", false}, // other control characters: clients refuse them
		{"a\x1fb", false},
		{"a\x7fb", false},
		{" spaces inside and around ", true},
	} {
		if got := validHeaderValue(tc.value); got != tc.ok {
			t.Errorf("validHeaderValue(%q) = %v, want %v", tc.value, got, tc.ok)
		}
	}
}

func TestAddHeaderCanonicalises(t *testing.T) {
	h := http.Header{}
	for _, name := range []string{"content-type", "CONTENT-TYPE", "Content-Type"} {
		if err := addHeader(h, name, name); err != nil {
			t.Fatal(err)
		}
	}
	want := http.Header{"Content-Type": {"content-type", "CONTENT-TYPE", "Content-Type"}}
	if !equalHeader(h, want) || len(h) != 1 {
		t.Errorf("got %v, want %v", h, want)
	}
}
