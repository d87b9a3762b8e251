package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// tinyEngine is an engine serving the tiny WAT reactor as name with the
// given request body limit (0: the default).
func tinyEngine(t *testing.T, name string, maxBody int64) *runtime.Engine {
	t.Helper()
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: name, Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{MaxRequestBody: maxBody}}); err != nil {
		t.Fatal(err)
	}
	return e
}

// rawPost sends a POST's head to addr and returns the connection and a
// reader of its answers.
func rawPost(t *testing.T, addr, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// A body over the function's own limit is refused before it is sent: the
// client that asks to continue gets 413, never 100 Continue, and the
// message names the function's limit.
func TestHandlerFunctionBodyLimitBeforeTheBody(t *testing.T) {
	e := tinyEngine(t, "small", 1024)
	srv := httptest.NewServer(&edge.Handler{Invoker: e, Function: "small", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer srv.Close()
	_, br := rawPost(t, srv.Listener.Addr().String(),
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "this function's limit of 1024 bytes") {
		t.Fatalf("5 MB to a function with a 1 KiB limit: %d %q, want 413 naming the function's limit first", resp.StatusCode, b)
	}
	// Within the limit, the function answers.
	resp2, err := srv.Client().Post(srv.URL+"/x", "text/plain", strings.NewReader(strings.Repeat("x", 1024)))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 200 {
		t.Fatalf("1 KiB to a function with a 1 KiB limit: %d", resp2.StatusCode)
	}
}

// The bodies the node holds at once are bounded: a request whose body
// would pass MaxBodyMemory gets 503 with Retry-After at once, the budget
// comes back when a request ends, and nothing is left held.
func TestHandlerBodyMemoryCap(t *testing.T) {
	e := tinyEngine(t, "fn", 0)
	h := &edge.Handler{Invoker: e, Function: "fn", MaxBody: 1 << 20, MaxBodyMemory: 3 << 19, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	const declared = 1 << 20
	head := fmt.Sprintf("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", declared)
	part := bytes.Repeat([]byte("x"), 600<<10)

	// A holds a buffer for its whole 1 MiB, with 600 KiB of it sent.
	ca, bra := rawPost(t, addr, head)
	if _, err := ca.Write(part); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for edge.BodyMemoryUsed(h) <= 512<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("A's body holds %d bytes after 600 KiB arrived", edge.BodyMemoryUsed(h))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// B would need as much: refused at once.
	cb, brb := rawPost(t, addr, head)
	if _, err := cb.Write(part); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(brb, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "retry shortly") {
		t.Fatalf("a body past the node's body memory: %d %q (Retry-After %q), want 503 with Retry-After: 1",
			resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	// A completes and is served.
	if _, err := ca.Write(bytes.Repeat([]byte("x"), declared-len(part))); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bra, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the request within the budget: %d", resp.StatusCode)
	}
	// Its share came back: another whole body fits.
	r2, err := srv.Client().Post(srv.URL+"/x", "text/plain", bytes.NewReader(make([]byte, declared)))
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 {
		t.Fatalf("a body after the first request ended: %d", r2.StatusCode)
	}
	deadline = time.Now().Add(5 * time.Second)
	for edge.BodyMemoryUsed(h) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still held with no request under way", edge.BodyMemoryUsed(h))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// A body that does not arrive in time is a 408, and a transport error's
// text (which names the node's addresses) stays out of answers outside
// dev; a body that does not match its Content-Length says so.
func TestHandlerBodyReadErrors(t *testing.T) {
	e := tinyEngine(t, "fn", 0)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reset := errors.New("read tcp 10.1.2.3:443->10.9.9.9:5555: connection reset by peer")
	for _, c := range []struct {
		name   string
		dev    bool
		body   io.Reader
		length int64
		status int
		want   string
		not    string
	}{
		{"deadline", false, errReader{os.ErrDeadlineExceeded}, -1, http.StatusRequestTimeout, "did not arrive in time", ""},
		{"transport error", false, errReader{reset}, -1, http.StatusBadRequest, "reading the request body failed", "10.1.2.3"},
		{"transport error, dev", true, errReader{reset}, -1, http.StatusBadRequest, "10.1.2.3", ""},
		{"short body", false, strings.NewReader("abc"), 10, http.StatusBadRequest, "ended after 3 of its 10 bytes", ""},
	} {
		r := httptest.NewRequest("POST", "/x", c.body)
		r.ContentLength = c.length
		w := httptest.NewRecorder()
		(&edge.Handler{Invoker: e, Function: "fn", Dev: c.dev, Logger: quiet}).ServeHTTP(w, r)
		got := w.Body.String()
		if w.Code != c.status || !strings.Contains(got, c.want) || (c.not != "" && strings.Contains(got, c.not)) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, w.Code, got, c.status, c.want)
		}
	}
}

// Requests that are not for a function: CONNECT (plain, or extended for
// WebSocket) is refused, OPTIONS * is the server's own 200 on every
// protocol, and an HTTP/2 preface on a plain port says HTTP/2 needs TLS.
func TestHandlerServerLevelRequests(t *testing.T) {
	e := tinyEngine(t, "fn", 0)
	h := &edge.Handler{Invoker: e, Function: "fn", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, c := range []struct {
		method, target string
		status         int
		want           string
	}{
		{"CONNECT", "example.com:443", http.StatusNotImplemented, "CONNECT is not supported"},
		{"OPTIONS", "*", http.StatusOK, "<empty>"},
		{"PRI", "*", http.StatusHTTPVersionNotSupported, "h2c"},
		{"OPTIONS", "/x", http.StatusOK, ""}, // a function's, as any method
	} {
		r := httptest.NewRequest(c.method, "/", nil)
		r.RequestURI = c.target
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if c.want == "<empty>" {
			// The server's own answer, not the function's (which has a body).
			if w.Code != c.status || w.Body.Len() != 0 {
				t.Errorf("%s %s: %d %q, want %d with no body", c.method, c.target, w.Code, w.Body.String(), c.status)
			}
			continue
		}
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.target, w.Code, w.Body.String(), c.status, c.want)
		}
	}
}
