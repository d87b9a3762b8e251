package gojinn

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// serve is the code both execution modes share; these tests run it on the
// host (the wasm builds are exercised by the examples' tests).
func TestServe(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	cases := []struct {
		name    string
		handler http.HandlerFunc
		req     *protocol.Request
		status  int
		body    string
		ctype   string
	}{
		{"plain", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.URL.Query().Get("q"))
		},
			&protocol.Request{Method: "GET", URI: "/a?q=1", Path: "/a", RawQuery: "q=1"}, 200, "GET /a 1", "text/plain; charset=utf-8"},
		{"https request has r.TLS", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, r.TLS != nil && r.TLS.HandshakeComplete)
		}, &protocol.Request{Method: "GET", URI: "/", Path: "/", Scheme: "https"}, 200, "true", "text/plain; charset=utf-8"},
		{"http request has no r.TLS", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.TLS != nil) },
			&protocol.Request{Method: "GET", URI: "/", Path: "/", Scheme: "http"}, 200, "false", "text/plain; charset=utf-8"},
		{"escaped path keeps RawPath", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.EscapedPath()) },
			&protocol.Request{Method: "GET", URI: "/a%2Fb", Path: "/a/b"}, 200, "/a%2Fb", "text/plain; charset=utf-8"},
		{"body and proto", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/x-test")
			w.WriteHeader(201)
			w.Write(append(b, []byte(" "+r.Proto)...))
		}, &protocol.Request{Method: "POST", URI: "/", Path: "/", Body: []byte("hi"), Proto: "HTTP/2.0"}, 201, "hi HTTP/2.0", "application/x-test"},
		{"panic becomes 500", func(w http.ResponseWriter, r *http.Request) { panic("boom") },
			&protocol.Request{Method: "GET", URI: "/", Path: "/"}, 500, "internal error in function\n", "text/plain; charset=utf-8"},
		{"invalid status becomes 500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(42) },
			&protocol.Request{Method: "GET", URI: "/", Path: "/"}, 500, "", ""},
		{"informational status ignored, final one kept", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "later")
		}, &protocol.Request{Method: "GET", URI: "/", Path: "/"}, 202, "later", "text/plain; charset=utf-8"},
		{"informational status alone means 200", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusSwitchingProtocols)
			io.WriteString(w, "no upgrade")
		}, &protocol.Request{Method: "GET", URI: "/", Path: "/"}, 200, "no upgrade", "text/plain; charset=utf-8"},
		{"info while serving", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, Info(r).RequestID+"/"+Info(r).Function)
		},
			&protocol.Request{Method: "GET", URI: "/", Path: "/", RequestID: "r1", Function: "f"}, 200, "r1/f", "text/plain; charset=utf-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			HandleFunc(c.handler)
			resp := serve(c.req)
			if resp.StatusOrDefault() != c.status || string(resp.Body) != c.body || resp.Headers.Get("Content-Type") != c.ctype {
				t.Fatalf("got %d %q %q", resp.StatusOrDefault(), resp.Body, resp.Headers.Get("Content-Type"))
			}
			if Info(&http.Request{}) != nil {
				t.Fatal("Info outside a handler must be nil")
			}
		})
	}
}

func TestHandleNilPanics(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "nil handler") {
			t.Fatalf("recovered %v", v)
		}
	}()
	Handle(nil)
}
