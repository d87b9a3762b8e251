package gojinn

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// rawServe runs h on req through the reactor's wire path and decodes the
// answer as the host does.
func rawServe(t *testing.T, h func(*RawResponse, *RawRequest), req *protocol.Request) *protocol.Response {
	t.Helper()
	HandleRaw(h)
	resp, err := protocol.DecodeResponseWire(handleWire(protocol.AppendRequestWire(nil, req)))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Header names reach a raw handler as the host sent them; every way of
// reading them still gives canonical names or ignores case.
func TestRawHeaderNamesAsSent(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	req := &protocol.Request{Method: "GET", URI: "/", Path: "/",
		Headers: http.Header{"x-lower": {"1"}, "X-UPPER": {"2"}, "Accept": {"3"}}}
	resp := rawServe(t, func(w *RawResponse, r *RawRequest) {
		var all []string
		for n, v := range r.Headers() {
			all = append(all, n+"="+v)
		}
		h := r.HTTPRequest().Header
		fmt.Fprintf(w, "%s %s %s|%v|%v %v", r.Header("X-Lower"), r.Header("x-upper"), r.HeaderValues("ACCEPT"),
			all, h.Get("x-lower"), h["X-Upper"])
	}, req)
	if want := "1 2 [3]|[Accept=3 X-Upper=2 X-Lower=1]|1 [2]"; string(resp.Body) != want {
		t.Errorf("got %q, want %q", resp.Body, want)
	}
}

func TestRawHandler(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	base := protocol.Request{Method: "POST", URI: "/p?a=1", Path: "/p", RawQuery: "a=1", Host: "h.test",
		Scheme: "https", Proto: "HTTP/2.0", RemoteAddr: "192.0.2.1:9", RequestID: "r1", TraceParent: "00-t-s-01",
		Function: "fn", FunctionVersion: "7", Body: []byte("body"),
		Headers: http.Header{"Accept": {"a/b"}, "X-Multi": {"1", "2"}}}
	cases := []struct {
		name   string
		h      func(*RawResponse, *RawRequest)
		status int
		body   string
		hdr    http.Header
	}{
		{"fields", func(w *RawResponse, r *RawRequest) {
			fmt.Fprintf(w, "%s %s %s %s %s %s %s %s %s %s %s %s %s", r.Method(), r.URI(), r.Path(), r.RawQuery(), r.Host(),
				r.Scheme(), r.Proto(), r.RemoteAddr(), r.RequestID(), r.TraceParent(), r.Function(), r.FunctionVersion(), r.Body())
		}, 200, "POST /p?a=1 /p a=1 h.test https HTTP/2.0 192.0.2.1:9 r1 00-t-s-01 fn 7 body", nil},
		{"request headers", func(w *RawResponse, r *RawRequest) {
			var all []string
			for n, v := range r.Headers() {
				all = append(all, n+"="+v)
			}
			fmt.Fprintf(w, "%s|%s|%q|%v|%v", r.Header("accept"), r.Header("X-MULTI"), r.Header("none"),
				r.HeaderValues("x-multi"), all)
		}, 200, `a/b|1|""|[1 2]|[Accept=a/b X-Multi=1 X-Multi=2]`, nil},
		{"response headers and status", func(w *RawResponse, r *RawRequest) {
			w.AddHeader("X-A", "1")
			w.AddHeader("x-a", "2")
			w.SetHeader("X-B", "old")
			w.SetHeader("x-b", "new")
			w.AddHeader("X-Gone", "1")
			w.DelHeader("X-GONE")
			w.SetHeader("Content-Type", "application/x-test")
			w.WriteHeader(201)
			w.WriteHeader(500) // the first call wins, as in net/http
			io.WriteString(w, "made "+w.Header("x-b"))
		}, 201, "made new", http.Header{"X-A": {"1", "2"}, "X-B": {"new"}, "Content-Type": {"application/x-test"}}},
		{"sniffed content type", func(w *RawResponse, r *RawRequest) { w.Write([]byte("<html>hi</html>")) },
			200, "<html>hi</html>", http.Header{"Content-Type": {"text/html; charset=utf-8"}}},
		{"empty answer", func(w *RawResponse, r *RawRequest) {}, 200, "", http.Header{}},
		{"panic becomes 500", func(w *RawResponse, r *RawRequest) {
			w.SetHeader("X-Secret", "s")
			w.WriteString("half")
			panic("boom")
		}, 500, "internal error in function\n", http.Header{"Content-Type": {"text/plain; charset=utf-8"}}},
		{"invalid status becomes 500", func(w *RawResponse, r *RawRequest) { w.WriteHeader(42) }, 500, "", http.Header{}},
		{"informational status ignored", func(w *RawResponse, r *RawRequest) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNoContent)
		}, 204, "", http.Header{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for round := range 2 { // the second round reuses the request and response
				resp := rawServe(t, c.h, &base)
				if resp.StatusOrDefault() != c.status || string(resp.Body) != c.body {
					t.Fatalf("round %d: %d %q, want %d %q", round, resp.StatusOrDefault(), resp.Body, c.status, c.body)
				}
				if c.hdr != nil && !equalHeader(resp.Headers, c.hdr) {
					t.Fatalf("round %d: headers %v, want %v", round, resp.Headers, c.hdr)
				}
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// rawRequest is req as a raw handler reads it.
func rawRequest(t testing.TB, req *protocol.Request) *RawRequest {
	r := new(RawRequest)
	if err := r.reset(protocol.AppendRequestWire(nil, req)); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRawQuery checks Query against url.ParseQuery, which a net/http
// handler's r.URL.Query() uses.
func TestRawQuery(t *testing.T) {
	queries := []string{"", "a=1", "a=1&a=2", "a", "a=", "=1&a=3", "b=1&a=x%20y", "a=x+y", "a%62=1&ab=2",
		"a=%zz&a=ok", "a=1;b=2&a=3", "&&a=4&", "a=%C3%A9", "k=v=w"}
	keys := []string{"a", "b", "ab", "", "k", "missing"}
	for _, q := range queries {
		parsed, _ := url.ParseQuery(q)
		r := rawRequest(t, &protocol.Request{RawQuery: q})
		for _, k := range keys {
			got, ok := r.QueryOK(k)
			_, want := parsed[k]
			if got != parsed.Get(k) || ok != want {
				t.Errorf("query %q key %q: %q %v, url.ParseQuery gives %q %v", q, k, got, ok, parsed.Get(k), want)
			}
			if r.Query(k) != got {
				t.Errorf("Query and QueryOK disagree on %q in %q", k, q)
			}
		}
	}
}

// FuzzRawQuery checks Query and QueryOK against url.ParseQuery on any
// query and key.
func FuzzRawQuery(f *testing.F) {
	for _, q := range []string{"", "a=1&a=2", "=1&a=3", "b=1&a=x%20y", "a=x+y", "a%62=1&ab=2", "a=%zz&a=ok",
		"a=1;b=2&a=3", "&&a=4&", "a=%C3%A9", "k=v=w", "a%3D=1", "a+b=c"} {
		f.Add(q, "a")
	}
	f.Fuzz(func(t *testing.T, q, key string) {
		parsed, _ := url.ParseQuery(q)
		r := rawRequest(t, &protocol.Request{RawQuery: q})
		got, ok := r.QueryOK(key)
		_, want := parsed[key]
		if got != parsed.Get(key) || ok != want {
			t.Errorf("query %q key %q: %q %v, url.ParseQuery gives %q %v", q, key, got, ok, parsed.Get(key), want)
		}
	})
}

// TestRawStringsOutliveTheRequest: a handler may keep the strings it gets
// (a map key, say); the next request must not change them.
func TestRawStringsOutliveTheRequest(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	var kept []string
	h := func(w *RawResponse, r *RawRequest) { kept = append(kept, r.Path(), r.Header("X-K"), r.Query("q")) }
	for _, p := range []string{"/one", "/two"} {
		rawServe(t, h, &protocol.Request{Method: "GET", URI: p + "?q=" + p[1:], Path: p, RawQuery: "q=" + p[1:],
			Headers: http.Header{"X-K": {p}}})
	}
	if want := []string{"/one", "/one", "one", "/two", "/two", "two"}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
}

// TestRawCommandMode: a WASI command (isolated mode) built with a raw
// handler answers through serve, as the reactor does.
func TestRawCommandMode(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	HandleRaw(func(w *RawResponse, r *RawRequest) {
		w.AddHeader("x-b", "2")
		w.AddHeader("X-A", "1")
		w.WriteHeader(202)
		w.WriteString(r.Header("Accept") + "," + strings.Join(r.HeaderValues("X-Multi"), "+") + "," + string(r.Body()))
	})
	resp := serve(&protocol.Request{Method: "PUT", URI: "/", Path: "/", Body: []byte("b"),
		Headers: http.Header{"X-Multi": {"1", "2"}, "Accept": {"x"}}})
	if resp.Status != 202 || string(resp.Body) != "x,1+2,b" ||
		!equalHeader(resp.Headers, http.Header{"X-A": {"1"}, "X-B": {"2"}, "Content-Type": {"text/plain; charset=utf-8"}}) {
		t.Errorf("got %d %q %v", resp.Status, resp.Body, resp.Headers)
	}
}

// TestRawHTTPRequest: the escape hatch gives the *http.Request a net/http
// handler would have seen.
func TestRawHTTPRequest(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	var got *http.Request
	rawServe(t, func(w *RawResponse, r *RawRequest) { got = r.HTTPRequest() }, &protocol.Request{Method: "POST",
		URI: "/a%2Fb?x=1", Path: "/a/b", RawQuery: "x=1", Proto: "HTTP/2.0", Body: []byte("payload"),
		Headers: http.Header{"X-Multi": {"1", "2"}}})
	body, _ := io.ReadAll(got.Body)
	if got.Method != "POST" || got.URL.EscapedPath() != "/a%2Fb" || got.URL.Query().Get("x") != "1" ||
		got.ProtoMajor != 2 || string(body) != "payload" || !slices.Equal(got.Header["X-Multi"], []string{"1", "2"}) {
		t.Errorf("got %+v (body %q)", got, body)
	}
}

// TestHandleSwitchesBack: the last registration wins, raw or net/http.
func TestHandleSwitchesBack(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	HandleRaw(func(w *RawResponse, r *RawRequest) { w.WriteString("raw") })
	HandleFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "net/http") })
	resp, err := protocol.DecodeResponseWire(handleWire(benchWire()))
	if err != nil || string(resp.Body) != "net/http" {
		t.Fatalf("%q %v", resp.Body, err)
	}
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "nil handler") {
			t.Fatalf("HandleRaw(nil) recovered %v", v)
		}
	}()
	HandleRaw(nil)
}

func rawHello(w *RawResponse, r *RawRequest) {
	name := r.Query("name")
	if name == "" {
		name = "world"
	}
	w.SetHeader("Content-Type", "text/plain; charset=utf-8")
	w.WriteString("Hello, ")
	w.WriteString(name)
	w.WriteString("!\n")
}

// BenchmarkHandleRawWire is BenchmarkHandleWire for a raw handler
// (examples/hello-raw's).
func BenchmarkHandleRawWire(b *testing.B) {
	defer Handle(http.NotFoundHandler())
	in := benchWire()
	HandleRaw(rawHello)
	b.ReportAllocs()
	for b.Loop() {
		handleWire(in)
	}
}

// A RawRequest kept past its handler (which HandleRaw forbids) reads empty
// fields, not those of the request that reuses the buffer next.
func TestRawRequestKeptPastItsHandler(t *testing.T) {
	defer Handle(http.NotFoundHandler())
	var kept *RawRequest
	rawServe(t, func(w *RawResponse, r *RawRequest) {
		kept = r
		w.WriteString(r.Path())
	}, &protocol.Request{Method: "GET", URI: "/first?q=1", Path: "/first", RawQuery: "q=1",
		Headers: http.Header{"X-A": {"1"}}, Body: []byte("b")})
	if kept.Path() != "" || kept.Query("q") != "" || kept.Header("X-A") != "" || kept.Body() != nil || kept.Method() != "" {
		t.Errorf("after its handler: path %q, query %q, header %q, body %q, method %q; want all empty",
			kept.Path(), kept.Query("q"), kept.Header("X-A"), kept.Body(), kept.Method())
	}
}
