package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// tlsTestLogger logs to t until the test ends; background certificate
// work may log later, when t.Log would panic.
func tlsTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlsTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tlsTestWriter writes lines to t.Log until the test ends.
func tlsTestWriter(t *testing.T) io.Writer {
	w := &guardedTestWriter{t: t}
	t.Cleanup(w.stop)
	return w
}

type guardedTestWriter struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (w *guardedTestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *guardedTestWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// tlsServeHTTPS serves a fixed answer over TLS with cfg on 127.0.0.1:0 and
// returns the port. The server stops when the test ends.
func tlsServeHTTPS(t *testing.T, cfg *tls.Config) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tlsServeHTTPSOn(t, ln, cfg)
}

func tlsServeHTTPSOn(t *testing.T, ln net.Listener, cfg *tls.Config) int {
	t.Helper()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello over "+r.Proto)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(tlsTestWriter(t), "https: ", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serving TLS: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// tlsHandshake connects to 127.0.0.1:port asking for serverName and
// verifying against roots; it returns the verified state.
func tlsHandshake(port int, serverName string, roots *x509.CertPool) (tls.ConnectionState, error) {
	d := &tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// getOverTLS makes one HTTPS request to host:port (host resolving to the
// loopback) trusting roots, and returns the body and the TLS state.
func getOverTLS(t *testing.T, host string, port int, roots *x509.CertPool) (string, *tls.ConnectionState) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp.TLS
}

// tlsLogBuffer keeps what a logger wrote, for tests that look for a line.
type tlsLogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *tlsLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *tlsLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CertMagic's NaN and infinite floats reach a JSON log as strings, not as
// slog's "!ERROR:json: unsupported value" placeholder.
func TestZapToSlogNonFiniteFloats(t *testing.T) {
	var buf tlsLogBuffer
	log := zapToSlog(slog.New(slog.NewJSONHandler(&buf, nil)))
	log.Info("cache", zap.Float64("fill", math.NaN()), zap.Float32("ratio", float32(math.Inf(1))), zap.Float64("ok", 0.5))
	got := buf.String()
	for _, want := range []string{`"fill":"NaN"`, `"ratio":"+Inf"`, `"ok":0.5`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %s lacks %s", got, want)
		}
	}
	if strings.Contains(got, "!ERROR") {
		t.Errorf("log line %s has an encoding error", got)
	}
}
