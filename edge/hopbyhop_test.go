package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Connection-specific headers a guest sets never leave the node: with
// them an HTTP/3 client refuses the response and HTTP/2 forbids them, and
// over HTTP/1.1 they would switch the framing to chunked or close a
// connection the node keeps. Alt-Svc stays the node's own. Headers the guest's Connection header names
// go too; the rest of the response is intact on every protocol, and an
// HTTP/1.1 connection still serves the next pipelined request. Both forms
// of a response's headers (a map from isolated calls, fields from pooled
// ones, at /fields) are handled alike.
func TestWriteResponseDropsConnectionHeaders(t *testing.T) {
	guest := http.Header{
		"Connection":        {"close, X-Hop, Alt-Svc"},
		"X-Hop":             {"named by Connection"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"h2c"},
		"Te":                {"trailers"},
		"Trailer":           {"X-Checksum"},
		"Alt-Svc":           {`h3="elsewhere.example:443"`},
		"Content-Length":    {"999"},
		"Content-Type":      {"text/plain"},
		"X-Kept":            {"yes"},
		"Set-Cookie":        {"a=1", "b=2"},
	}
	// The fields as a guest sends them (sorted by name), with the values
	// of one name apart.
	fields := []protocol.HeaderField{{Name: "Set-Cookie", Value: "a=1"}}
	for _, name := range slices.Sorted(maps.Keys(guest)) {
		for _, v := range guest[name] {
			if name != "Set-Cookie" || v != "a=1" {
				fields = append(fields, protocol.HeaderField{Name: name, Value: v})
			}
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := &protocol.Response{Status: http.StatusOK, Headers: guest, Body: []byte("hello")}
		if r.URL.Path == "/fields" {
			resp.Headers, resp.Fields = nil, fields
		}
		w.Header().Set("X-Node", "kept") // set before, as the server sets Alt-Svc
		w.Header().Set("X-Kept", "replaced by the guest's")
		_ = edge.WriteResponse(w, r, resp)
	})
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe}, h)
	dropped := []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer"}
	for _, c := range []struct {
		name   string
		client *http.Client
		path   string
	}{{"h1", s.h1, "/"}, {"h2", s.h2, "/"}, {"h3", s.h3, "/"}, {"h1 fields", s.h1, "/fields"}, {"h2 fields", s.h2, "/fields"}, {"h3 fields", s.h3, "/fields"}} {
		resp, err := c.client.Get(s.httpsURL + c.path)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "hello" || resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %q (%v)", c.name, resp.StatusCode, body, err)
		}
		for _, name := range dropped {
			if v, ok := resp.Header[name]; ok {
				t.Errorf("%s: %s: %q reached the client", c.name, name, v)
			}
		}
		if alt := resp.Header.Get("Alt-Svc"); strings.Contains(alt, "elsewhere") || (!strings.HasPrefix(c.name, "h3") && !strings.HasPrefix(alt, `h3=":`)) {
			t.Errorf("%s: Alt-Svc %q; want the node's own (none over HTTP/3)", c.name, alt)
		}
		if resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("Content-Type") != "text/plain" || resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 {
			t.Errorf("%s: headers %v, length %d, transfer encoding %v; want the guest's other headers and the node's Content-Length", c.name, resp.Header, resp.ContentLength, resp.TransferEncoding)
		}
		if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"a=1", "b=2"}) || resp.Header.Get("X-Node") != "kept" || len(resp.Header.Values("X-Kept")) != 1 {
			t.Errorf("%s: Set-Cookie %q, X-Node %q, X-Kept %q; want both cookies in order, the node's header, the guest's X-Kept alone", c.name, got, resp.Header.Get("X-Node"), resp.Header.Values("X-Kept"))
		}
	}

	// The wire of two pipelined HTTP/1.1 requests: both answered, each
	// with Content-Length framing and without the dropped headers.
	br := pipeline(t, s, "/", "/fields")
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined response %d: %v", i+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "hello" || resp.ContentLength != 5 || resp.Close || resp.Header.Get("Connection") != "" {
			t.Fatalf("pipelined response %d: %q (%v), length %d, close %v, headers %v", i+1, body, err, resp.ContentLength, resp.Close, resp.Header)
		}
	}
}

// 204 and 304 carry no content: a body the guest wrote anyway is dropped
// and no Content-Length announces it, not even the guest's own, so every
// protocol gets a well-formed response (over HTTP/2 an announced length
// without its bytes failed the request; a 204 must not have one, RFC 9110
// section 8.6) and an HTTP/1.1 connection keeps its framing.
func TestWriteResponseNoContentStatuses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusNoContent
		if r.URL.Path == "/304" {
			status = http.StatusNotModified
		}
		_ = edge.WriteResponse(w, r, &protocol.Response{Status: status, Headers: http.Header{"Etag": {`"v1"`}, "Content-Length": {"7"}}, Body: []byte("ignored")})
	})
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe}, h)
	for _, path := range []string{"/204", "/304"} {
		s.eachProtocol(t, path, func(name string, resp *http.Response, body []byte, err error) {
			if err != nil || len(body) != 0 || "/"+resp.Status[:3] != path || resp.Header.Get("Content-Length") != "" || resp.Header.Get("Etag") != `"v1"` {
				t.Errorf("%s %s: %s, body %q (%v), headers %v", name, path, resp.Status, body, err, resp.Header)
			}
		})
	}
	br := pipeline(t, s, "/204", "/304")
	for _, want := range []int{http.StatusNoContent, http.StatusNotModified} {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("pipelined %d: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || len(body) != 0 {
			t.Fatalf("pipelined: %s %q, want %d and no body", resp.Status, body, want)
		}
	}
}

// 205 Reset Content carries no content (RFC 9110 section 15.3.6): a body
// the guest wrote is dropped and the length is 0, on every protocol and
// over a pipelined HTTP/1.1 connection. Spaces and tabs around a guest's
// header values are not sent (HTTP/2 and HTTP/3 call such a field
// malformed), in either header form.
func TestWriteResponseResetContentAndTrimmedValues(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := &protocol.Response{Status: http.StatusResetContent, Body: []byte("abc")}
		if r.URL.Path == "/fields" {
			resp.Fields = []protocol.HeaderField{{Name: "X-A", Value: " padded\t"}, {Name: "X-A", Value: "\tsecond "}}
		} else {
			resp.Headers = http.Header{"X-A": {" padded\t", "\tsecond "}}
		}
		_ = edge.WriteResponse(w, r, resp)
	})
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe}, h)
	for _, path := range []string{"/fields", "/map"} {
		s.eachProtocol(t, path, func(name string, resp *http.Response, body []byte, err error) {
			if err != nil || len(body) != 0 || resp.StatusCode != http.StatusResetContent {
				t.Errorf("%s %s: %s, body %q (%v), want 205 with no body", name, path, resp.Status, body, err)
			}
			if got := resp.Header.Values("X-A"); len(got) != 2 || got[0] != "padded" || got[1] != "second" {
				t.Errorf("%s %s: X-A %q, want the values without surrounding spaces and tabs", name, path, got)
			}
		})
	}
	br := pipeline(t, s, "/fields", "/map")
	for range 2 {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("pipelined: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusResetContent || len(body) != 0 {
			t.Fatalf("pipelined: %s %q, want 205 and no body", resp.Status, body)
		}
	}
}

// The answer to HEAD has no body; a guest that says how long the GET
// answer would be (RFC 9110 section 9.3.2) has its Content-Length kept on
// every protocol, rather than replaced by the 0 bytes sent. A malformed
// or repeated one is left out, and so is a missing one (not made 0); a
// body the guest wrote for HEAD is measured as for GET.
func TestWriteResponseHeadKeepsGuestLength(t *testing.T) {
	guest := map[string][]string{"/1234": {"1234"}, "/bad": {"12a"}, "/negative": {"-1"}, "/two": {"5", "5"}, "/none": nil, "/body": {"1234"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := &protocol.Response{Status: http.StatusOK, Headers: http.Header{"Content-Type": {"text/plain"}}}
		if v := guest[r.URL.Path]; v != nil {
			resp.Headers["Content-Length"] = v
		}
		if r.URL.Path == "/body" {
			resp.Body = []byte("hello")
		}
		_ = edge.WriteResponse(w, r, resp)
	})
	s := startServer(t, edge.ServerConfig{}, h)
	want := map[string]string{"/1234": "1234", "/bad": "", "/negative": "", "/two": "", "/none": "", "/body": "5"}
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"h1", s.h1}, {"h2", s.h2}, {"h3", s.h3}} {
		for _, path := range slices.Sorted(maps.Keys(want)) {
			resp, err := c.client.Head(s.httpsURL + path)
			if err != nil {
				t.Errorf("%s HEAD %s: %v", c.name, path, err)
				continue
			}
			resp.Body.Close()
			if got := resp.Header.Values("Content-Length"); resp.StatusCode != http.StatusOK || strings.Join(got, ",") != want[path] {
				t.Errorf("%s HEAD %s: %d, Content-Length %q; want 200 and %q", c.name, path, resp.StatusCode, got, want[path])
			}
		}
	}
}

// pipeline sends a GET for each path on one plain-HTTP connection to s,
// all before reading, and returns the reader of the answers. The
// connection closes with the test.
func pipeline(t *testing.T, s *testServer, paths ...string) *bufio.Reader {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.plainURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var reqs strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p)
	}
	if _, err := io.WriteString(conn, reqs.String()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return bufio.NewReader(conn)
}

// A response with thousands of header fields (a guest may send them) goes
// through a header map rather than the scan for repeated names, which
// would take time quadratic in their number; it merges repeated names and
// drops what Connection lists like the scanning path.
func TestWriteResponseManyFields(t *testing.T) {
	var fields []protocol.HeaderField
	for i := range 5000 {
		fields = append(fields, protocol.HeaderField{Name: fmt.Sprintf("X-F%d", i%2500), Value: fmt.Sprint(i)},
			protocol.HeaderField{Name: "Connection", Value: "X-F7"})
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = edge.WriteResponse(w, r, &protocol.Response{Status: http.StatusOK, Fields: fields, Body: []byte("many")})
	})
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe, MaxHeaderBytes: 1 << 20}, h)
	resp, err := s.h1.Get(s.httpsURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("X-F3"); !slices.Equal(got, []string{"3", "2503"}) || resp.Header.Get("X-F7") != "" || len(resp.Header) < 2500 {
		t.Errorf("X-F3 %q, X-F7 %q, %d names; want both values in order, X-F7 dropped (Connection lists it), 2,499 guest names", got, resp.Header.Get("X-F7"), len(resp.Header))
	}
}
