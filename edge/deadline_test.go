package edge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// slowInvoker answers 200 with body after d, or fails like the runtime
// when the request's context ends first.
type slowInvoker struct {
	d    time.Duration
	body []byte
}

func (s slowInvoker) Invoke(ctx context.Context, _ string, _ *protocol.Request) (*runtime.Result, error) {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-t.C:
		return &runtime.Result{Response: &protocol.Response{Status: http.StatusOK, Body: s.body}}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", runtime.ErrCanceled, context.Cause(ctx))
	}
}

// returned wraps h and reports on the channel each time it returns.
func returned(h http.Handler) (http.Handler, <-chan struct{}) {
	done := make(chan struct{}, 16)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		h.ServeHTTP(w, r)
	}), done
}

func quietHandler(inv edge.Invoker) *edge.Handler {
	return &edge.Handler{Invoker: inv, Function: "f", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// edge.write_timeout bounds writing the response, not the function: a
// function that runs longer than the write (and read) timeout but within
// its own timeout gets its whole answer to the client on every protocol.
func TestWriteTimeoutExcludesFunctionRunTime(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100<<10) // more than the servers buffer
	h := quietHandler(slowInvoker{d: time.Second, body: body})
	s := startServer(t, edge.ServerConfig{WriteTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond}, h)
	type result struct {
		name   string
		status int
		n      int
		err    error
	}
	results := make(chan result, 3)
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"h1", s.h1}, {"h2", s.h2}, {"h3", s.h3}} {
		go func() {
			resp, err := c.client.Get(s.httpsURL + "/")
			if err != nil {
				results <- result{name: c.name, err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{c.name, resp.StatusCode, len(b), err}
		}()
	}
	for range 3 {
		r := <-results
		if r.err != nil || r.status != http.StatusOK || r.n != len(body) {
			t.Errorf("%s: status %d, %d of %d bytes, err %v; want the whole 200 answer", r.name, r.status, r.n, len(body), r.err)
		}
	}
}

// An HTTP/3 client that declares a body and stops sending it holds its
// request only until the read timeout: the handler returns.
func TestHTTP3StalledBodyEndsAtReadTimeout(t *testing.T) {
	h, done := returned(quietHandler(slowInvoker{}))
	s := startServer(t, edge.ServerConfig{ReadTimeout: 300 * time.Millisecond}, h)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, s.httpsURL+"/", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1000
	go func() { _, _ = pw.Write([]byte("the first bytes of 1000")) }()
	answer := make(chan string, 1)
	go func() {
		resp, err := s.h3.Do(req)
		if err != nil {
			answer <- err.Error()
			return
		}
		resp.Body.Close()
		answer <- resp.Status
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still waits for the body 10 s after the 300 ms read timeout")
	}
	pw.Close()
	t.Logf("client got: %s", <-answer)
}

// An HTTP/3 client that stops reading the response holds its request only
// until the write timeout: the handler returns.
func TestHTTP3StalledReaderEndsAtWriteTimeout(t *testing.T) {
	h, done := returned(quietHandler(slowInvoker{body: bytes.Repeat([]byte("x"), 16<<20)}))
	s := startServer(t, edge.ServerConfig{WriteTimeout: 300 * time.Millisecond}, h)
	resp, err := s.h3.Get(s.httpsURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read: flow control stops the server
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes 10 s after the 300 ms write timeout to a client that reads nothing")
	}
}

// At debug level quic-go logs every HTTP/3 request; the query string,
// which can carry secrets, never reaches the node's log.
func TestHTTP3DebugLogRedactsQuery(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServer(t, edge.ServerConfig{Logger: log}, protoHandler)
	if resp, _ := get(t, s.h3, s.httpsURL+"/p/q?token=SECRET&x=1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "SECRET") {
		t.Errorf("the log carries the query string:\n%s", out)
	}
	if !strings.Contains(out, `"/p/q"`) {
		t.Errorf("no debug line names the request's path (did quic-go get the logger?):\n%s", out)
	}
}

// brokenWriter is a ResponseWriter whose connection is gone: every body
// write fails.
type brokenWriter struct {
	h      http.Header
	status int
}

func (w *brokenWriter) Header() http.Header    { return w.h }
func (w *brokenWriter) WriteHeader(status int) { w.status = status }
func (w *brokenWriter) Write([]byte) (int, error) {
	return 0, errors.New("write tcp: broken pipe")
}

// An answer that could not be written is not logged or counted as the
// function's 200: the access log and the metrics say 499.
func TestUndeliveredAnswerIsNot200(t *testing.T) {
	var buf syncBuffer
	reg := prometheus.NewRegistry()
	metrics, err := edge.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := &edge.Handler{Invoker: slowInvoker{body: []byte("answer")}, Function: "f", AccessLog: true, Metrics: metrics,
		Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	h.ServeHTTP(&brokenWriter{h: http.Header{}}, httptest.NewRequest(http.MethodGet, "/", nil))
	if out := buf.String(); !strings.Contains(out, `"status":499`) {
		t.Errorf("access log %s; want status 499", out)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "gojinn_edge_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					counts[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if counts["499"] != 1 || counts["200"] != 0 {
		t.Errorf("gojinn_edge_requests_total by code %v; want one 499 and no 200", counts)
	}
}
