package edge_test

// Tests named by docs/security-model.md for what a failed invocation
// reveals to HTTP clients and to the node's log.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// lockedLog is a log destination the handler may write from any goroutine.
type lockedLog struct {
	mu  chan struct{}
	buf strings.Builder
}

func newLockedLog() *lockedLog { return &lockedLog{mu: make(chan struct{}, 1)} }

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.String()
}

// Without edge.dev_errors a failed invocation's response body is the
// status text and nothing else: no reason, no function name or version,
// no guest stderr. With it (the control) the body carries the reason and
// the stderr. The node's log names the reason but never holds the guest's
// stderr. Over TLS on loopback, against real guests in pooled and isolated
// mode.
func TestErrorBodiesHideReasonAndStderr(t *testing.T) {
	e := enginetest.Engine(t)
	load := func(spec runtime.FunctionSpec) {
		t.Helper()
		spec.Version = "v7-secret-build"
		if _, err := e.Load(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
	}
	load(runtime.FunctionSpec{Name: "abuse-pooled", Module: runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", true), Mode: runtime.ModePooled})
	load(runtime.FunctionSpec{Name: "abuse-command", Module: runtimetest.BuildGo(t, "runtime/testdata/guests/abuse", false)})
	load(runtime.FunctionSpec{Name: "loop", Module: runtimetest.WAT(t, "runtime/testdata/wat/loop.wat"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{Timeout: 100 * time.Millisecond}})

	// The guest's panic message is on its stderr; the Go runtime prints it.
	const stderrMark = "unrecovered panic in a goroutine"
	cases := []struct {
		function, path string
		status         int
		reason         string // in the dev body and in the log
		stderr         bool   // the failure leaves stderr output
	}{
		{"abuse-pooled", "/goexit", 500, "trap", true},
		{"abuse-command", "/goexit", 500, "exited with code 2", true},
		{"abuse-pooled", "/exit?n=3", 500, "exited with code 3", false},
		{"loop", "/", 504, "still running after 100ms", false},
	}
	for _, c := range cases {
		for _, dev := range []bool{false, true} {
			logs := newLockedLog()
			h := &edge.Handler{Invoker: e, Function: c.function, Dev: dev, Logger: slog.New(slog.NewTextHandler(logs, nil))}
			srv := httptest.NewTLSServer(h)
			resp, err := srv.Client().Get(srv.URL + c.path)
			if err != nil {
				srv.Close()
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			srv.Close()
			body, name := string(b), c.function+c.path
			if resp.StatusCode != c.status {
				t.Errorf("%s dev=%v: status %d, want %d (body %q)", name, dev, resp.StatusCode, c.status, body)
				continue
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s dev=%v: no X-Request-Id to quote to the operator", name, dev)
			}
			if !dev {
				if want := http.StatusText(c.status) + "\n"; body != want {
					t.Errorf("%s: without dev_errors the body is %q, want only %q", name, body, want)
				}
				for _, secret := range []string{c.reason, stderrMark, "guest stderr", c.function, "v7-secret-build", "goroutine"} {
					if strings.Contains(body, secret) {
						t.Errorf("%s: without dev_errors the body reveals %q: %q", name, secret, body)
					}
				}
			} else {
				if !strings.Contains(body, c.reason) {
					t.Errorf("%s: with dev_errors the body %q lacks the reason %q", name, body, c.reason)
				}
				if c.stderr && (!strings.Contains(body, "guest stderr:") || !strings.Contains(body, stderrMark)) {
					t.Errorf("%s: with dev_errors the body %q lacks the guest's stderr", name, body)
				}
			}
			log := logs.String()
			if !strings.Contains(log, "invocation failed") || !strings.Contains(log, c.reason) {
				t.Errorf("%s dev=%v: the log does not name the failure: %q", name, dev, log)
			}
			if strings.Contains(log, stderrMark) {
				t.Errorf("%s dev=%v: the guest's stderr reached the node's log: %q", name, dev, log)
			}
		}
	}
}

// notLoaded is an Invoker that has loaded no function, as the runtime of a
// node that has not finished loading a routed one yet.
type notLoaded struct{}

func (notLoaded) Invoke(context.Context, string, *protocol.Request) (*runtime.Result, error) {
	return nil, fmt.Errorf("%w: %q", runtime.ErrUnknownFunction, "secret-fn")
}

// The 503 for a routed function this node has not loaded yet is, like any
// error answer, the status text without edge.dev_errors: it does not name
// the function. With it (the control) it does. Both keep Retry-After and
// X-Request-Id.
func TestDeployingAnswerNamesFunctionOnlyInDev(t *testing.T) {
	router := routerFor(t, edge.Route{Path: "/*", Function: "secret-fn"})
	for _, dev := range []bool{false, true} {
		h := &edge.Handler{Invoker: notLoaded{}, Router: router, Dev: dev, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://a.example/x", nil))
		body := w.Body.String()
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != edge.RetryAfterDeploying || w.Header().Get("X-Request-Id") == "" {
			t.Errorf("dev=%v: %d, Retry-After %q, X-Request-Id %q; want 503 with both", dev, w.Code, w.Header().Get("Retry-After"), w.Header().Get("X-Request-Id"))
		}
		switch {
		case !dev && body != http.StatusText(http.StatusServiceUnavailable)+"\n":
			t.Errorf("without dev_errors the body is %q, want only the status text", body)
		case dev && !strings.Contains(body, "secret-fn"):
			t.Errorf("with dev_errors the body %q does not name the function", body)
		}
	}
}

// The HTTP/3 listener caps concurrent QUIC connections (MaxConns): a
// connection over the cap is closed at once with H3_EXCESSIVE_LOAD (QUIC
// has no backlog to queue it in), and the slot is free again once the
// holder goes. Each connection may open at most MaxConcurrentStreams
// request streams at once. Real QUIC over loopback.
func TestQUICConnectionAndStreamCaps(t *testing.T) {
	s := startServer(t, edge.ServerConfig{MaxConns: 1, MaxConcurrentStreams: 2}, protoHandler)
	tc := &tls.Config{RootCAs: s.pool, NextProtos: []string{http3.NextProtoH3}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first connection takes the only slot; its stream credit is the cap.
	holder, err := quic.DialAddr(ctx, s.h3Addr, tc.Clone(), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.CloseWithError(0, "") // before the server's shutdown waits for it
	for i := range 2 {
		if _, err := holder.OpenStream(); err != nil {
			t.Fatalf("stream %d of 2: %v", i+1, err)
		}
	}
	if _, err := holder.OpenStream(); !errors.Is(err, &quic.StreamLimitReachedError{}) {
		t.Fatalf("a third concurrent stream: %v, want StreamLimitReachedError", err)
	}

	// A second connection is closed by the server at once. The server
	// closes it with H3_EXCESSIVE_LOAD (0x107), but before the handshake
	// is confirmed QUIC must send an application close as the transport
	// error APPLICATION_ERROR without the code (RFC 9000, 10.2.3), which
	// is what a client then sees.
	const h3ExcessiveLoad = 0x107
	second, err := quic.DialAddr(ctx, s.h3Addr, tc.Clone(), &quic.Config{})
	if err == nil {
		select {
		case <-second.Context().Done():
			err = context.Cause(second.Context())
		case <-time.After(10 * time.Second):
			t.Fatal("a connection over the cap stayed open")
		}
	}
	var appErr *quic.ApplicationError
	var trErr *quic.TransportError
	switch {
	case errors.As(err, &appErr) && appErr.Remote && appErr.ErrorCode == h3ExcessiveLoad:
	case errors.As(err, &trErr) && trErr.Remote && trErr.ErrorCode == quic.ApplicationErrorErrorCode:
	default:
		t.Fatalf("connection over the cap ended with %v, want the server's H3_EXCESSIVE_LOAD or APPLICATION_ERROR", err)
	}

	// Once the holder goes, a new connection is served.
	_ = holder.CloseWithError(0, "done")
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr := &http3.Transport{TLSClientConfig: tc.Clone()}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(s.httpsURL + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = tr.Close()
			if resp.StatusCode != 200 || string(b) != "HTTP/3.0" {
				t.Fatalf("after the slot was freed: %d %q", resp.StatusCode, b)
			}
			break
		}
		_ = tr.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the freed slot was never reused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The edge's production TLS configs (mode internal) on a real server:
// TCP refuses TLS 1.1 and offers h2 over TLS 1.2 and 1.3; QUIC speaks h3
// over TLS 1.3. On the TLS listener a client that never sends a
// ClientHello, and one that stops halfway through its headers, are cut off
// at read_header_timeout (the plain-HTTP case is TestServerSlowHeaders).
func TestEdgeTLSVersionsAndSlowClients(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tl, err := edge.NewTLS(context.Background(), edge.TLSConfig{Mode: edge.TLSModeInternal, DataDir: dir}, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	pemBytes, err := edge.ExportCARoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("exported root is not PEM")
	}
	const headerTimeout = 300 * time.Millisecond
	srv, err := edge.NewServer(edge.ServerConfig{HTTPSAddr: "127.0.0.1:0", TCPTLS: tl.TCPConfig(), QUICTLS: tl.QUICConfig(),
		ReadHeaderTimeout: headerTimeout, Logger: quiet}, protoHandler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	https, h3, _ := srv.Addrs()

	dial := func(minV, maxV uint16) (tls.ConnectionState, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", https, &tls.Config{
			RootCAs: pool, ServerName: "localhost", MinVersion: minV, MaxVersion: maxV, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}
	if _, err := dial(tls.VersionTLS10, tls.VersionTLS11); err == nil {
		t.Error("a TLS 1.1 client completed a handshake")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		st, err := dial(v, v)
		if err != nil || st.Version != v || st.NegotiatedProtocol != "h2" {
			t.Errorf("TLS %x: version %x, ALPN %q, err %v; want h2", v, st.Version, st.NegotiatedProtocol, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, h3, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{})
	if err != nil {
		t.Fatalf("QUIC: %v", err)
	}
	if st := qc.ConnectionState().TLS; st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != http3.NextProtoH3 {
		t.Errorf("QUIC: TLS %x ALPN %q, want TLS 1.3 and h3", st.Version, st.NegotiatedProtocol)
	}
	_ = qc.CloseWithError(0, "")

	// cutOff reports how long the server kept c open.
	cutOff := func(c net.Conn) time.Duration {
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.Copy(io.Discard, c) // until the server closes (maybe after a 408)
		return time.Since(start)
	}
	raw, err := net.Dial("tcp", https)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if d := cutOff(raw); d > 5*time.Second {
		t.Errorf("a client that sent no ClientHello was held for %v", d)
	}
	tc, err := tls.Dial("tcp", https, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
		t.Fatal(err)
	}
	if d := cutOff(tc); d > 5*time.Second {
		t.Errorf("a TLS client with incomplete headers was held for %v", d)
	}
}

// Without edge.max_body_bytes the handler reads at most 10 MiB of a
// request body: one byte more is a 413 before the function runs (whose
// own limit is set higher here, so only the edge's default can refuse).
func TestHandlerDefaultBodyLimit(t *testing.T) {
	e := enginetest.Engine(t)
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "tiny", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"),
		Mode: runtime.ModePooled, Limits: runtime.Limits{MaxRequestBody: 64 << 20}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(&edge.Handler{Invoker: e, Function: "tiny", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer srv.Close()
	for _, c := range []struct {
		size   int
		status int
	}{{10 << 20, 200}, {10<<20 + 1, 413}} {
		// With a Content-Length, and chunked (a reader the client cannot
		// size), which the edge reads without knowing the length.
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(strings.Repeat("x", c.size))
			if chunked {
				body = io.MultiReader(body)
			}
			resp, err := srv.Client().Post(srv.URL+"/", "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("%d-byte body (chunked %v): %d %.100q, want %d", c.size, chunked, resp.StatusCode, b, c.status)
			}
		}
	}
}
