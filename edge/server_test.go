package edge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// selfSigned returns a certificate for localhost and 127.0.0.1 and a pool
// that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type testServer struct {
	*edge.Server
	pool                *x509.CertPool
	httpsURL, plainURL  string
	h3Addr              string
	h1, h2, h3, h0Plain *http.Client
}

func startServer(t *testing.T, cfg edge.ServerConfig, h http.Handler) *testServer {
	t.Helper()
	cert, pool := selfSigned(t)
	tcp := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	quicTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = "127.0.0.1:0"
	}
	cfg.TCPTLS, cfg.QUICTLS = tcp, quicTLS
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := edge.NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	https, h3, plain := s.Addrs()
	ts := &testServer{Server: s, pool: pool, httpsURL: "https://" + https, h3Addr: h3}
	if plain != "" {
		ts.plainURL = "http://" + plain
	}
	clientTLS := &tls.Config{RootCAs: pool}
	ts.h1 = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	ts.h2 = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	h3t := &http3.Transport{TLSClientConfig: clientTLS.Clone(), QUICConfig: &quic.Config{}}
	ts.h3 = &http.Client{Transport: h3t}
	ts.h0Plain = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(func() {
		ts.h1.CloseIdleConnections()
		ts.h2.CloseIdleConnections()
		_ = h3t.Close()
	})
	return ts
}

// protoResult is how one GET through testServer's clients ended.
type protoResult struct {
	proto  string
	status int
	body   string
	err    error
}

// getEveryProtocol GETs path over HTTP/1.1, HTTP/2 and HTTP/3 at once and
// returns the channel the three results arrive on.
func (s *testServer) getEveryProtocol(path string) <-chan protoResult {
	results := make(chan protoResult, 3)
	for _, c := range []*http.Client{s.h1, s.h2, s.h3} {
		go func() {
			resp, err := c.Get(s.httpsURL + path)
			if err != nil {
				results <- protoResult{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- protoResult{resp.Proto, resp.StatusCode, string(b), err}
		}()
	}
	return results
}

// eachProtocol GETs path over HTTP/1.1, HTTP/2 and HTTP/3 in turn and hands
// each answer and its body to check; a failed request is a test error.
func (s *testServer) eachProtocol(t *testing.T, path string, check func(name string, resp *http.Response, body []byte, err error)) {
	t.Helper()
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"h1", s.h1}, {"h2", s.h2}, {"h3", s.h3}} {
		resp, err := c.client.Get(s.httpsURL + path)
		if err != nil {
			t.Errorf("%s %s: %v", c.name, path, err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		check(c.name, resp, body, err)
	}
}

// answer is a response read whole.
type answer struct {
	StatusCode int
	Proto      string
	Header     http.Header
}

func get(t *testing.T, c *http.Client, url string) (answer, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Proto, resp.Header}, string(b)
}

var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, r.Proto)
})

// One port serves HTTP/1.1 and HTTP/2 over TCP and HTTP/3 over UDP; TCP
// responses advertise HTTP/3.
func TestServerProtocols(t *testing.T) {
	s := startServer(t, edge.ServerConfig{}, protoHandler)
	_, port, _ := net.SplitHostPort(s.h3Addr)
	if !strings.HasSuffix(s.httpsURL, ":"+port) {
		t.Fatalf("HTTP/3 on %s, HTTPS on %s: want the same port", s.h3Addr, s.httpsURL)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		proto  string
		altSvc bool
	}{
		{"h1", s.h1, "HTTP/1.1", true},
		{"h2", s.h2, "HTTP/2.0", true},
		{"h3", s.h3, "HTTP/3.0", false},
	} {
		resp, body := get(t, c.client, s.httpsURL+"/")
		if body != c.proto || resp.Proto != c.proto {
			t.Errorf("%s: served %q, response proto %q, want %q", c.name, body, resp.Proto, c.proto)
		}
		alt := resp.Header.Get("Alt-Svc")
		if c.altSvc && alt != `h3=":`+port+`"; ma=86400` {
			t.Errorf("%s: Alt-Svc %q, want h3 on port %s", c.name, alt, port)
		}
	}
}

// The plain port redirects to HTTPS by default and serves when asked.
func TestServerPlainHTTP(t *testing.T) {
	s := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0"}, protoHandler)
	resp, _ := get(t, s.h0Plain, s.plainURL+"/a/b?c=d")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.httpsURL, "https://"))
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(s.plainURL, "http://"))
	want := "https://" + net.JoinHostPort(host, port) + "/a/b?c=d"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// Whatever the Host header, the redirect keeps its host (IPv6
	// literals in brackets, once) and puts the HTTPS port.
	for host, wantHost := range map[string]string{
		"example.com": "example.com", "example.com:8080": "example.com",
		"[::1]": "[::1]", "[::1]:8080": "[::1]", "127.0.0.1:80": "127.0.0.1",
	} {
		req, _ := http.NewRequest(http.MethodGet, s.plainURL+"/p?q=1", nil)
		req.Host = host
		resp, err := s.h0Plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://" + wantHost + ":" + port + "/p?q=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("Host %q: %d %q, want 308 to %q", host, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	s2 := startServer(t, edge.ServerConfig{HTTPAddr: "127.0.0.1:0", Plain: edge.PlainServe}, protoHandler)
	if resp, body := get(t, s2.h0Plain, s2.plainURL+"/"); resp.StatusCode != 200 || body != "HTTP/1.1" {
		t.Fatalf("serve: %d %q", resp.StatusCode, body)
	}
}

// Oversized headers get 431 and the connection limit queues, not drops.
func TestServerLimits(t *testing.T) {
	s := startServer(t, edge.ServerConfig{MaxHeaderBytes: 4 << 10, MaxConns: 1}, protoHandler)
	req, _ := http.NewRequest("GET", s.httpsURL+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 16<<10))
	resp, err := s.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header: %d, want 431", resp.StatusCode)
	}
	s.h1.CloseIdleConnections()

	// Hold the only connection slot with an idle keep-alive connection.
	if resp, _ := get(t, s.h1, s.httpsURL+"/"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	other := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool}}}
	done := make(chan error, 1)
	go func() {
		resp, err := other.Get(s.httpsURL + "/")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("second connection served while the cap was taken (err %v)", err)
	case <-time.After(200 * time.Millisecond):
		// Still queued: the absence of progress is what this checks.
	}
	s.h1.CloseIdleConnections()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued connection never served after the slot was freed")
	}
	other.CloseIdleConnections()
}

// Shutdown lets in-flight requests on every protocol finish, then refuses
// new ones.
func TestServerGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 3)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- r.Proto
		<-release
		_, _ = io.WriteString(w, "done")
	})
	s := startServer(t, edge.ServerConfig{ShutdownGrace: 10 * time.Second}, h)
	results := s.getEveryProtocol("/")
	for range 3 {
		<-started
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// New TCP connections are refused once the listener is closed.
	deadline := time.Now().Add(5 * time.Second)
	addr := strings.TrimPrefix(s.httpsURL, "https://")
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the TCP listener still accepts during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	for range 3 {
		r := <-results
		if r.err != nil || r.body != "done" {
			t.Errorf("in-flight %s request: %q, %v", r.proto, r.body, r.err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// A request still running when the grace period ends is cut off, and
// Shutdown says why.
func TestServerShutdownGraceEnds(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	s := startServer(t, edge.ServerConfig{ShutdownGrace: 100 * time.Millisecond}, h)
	go func() {
		resp, err := s.h1.Get(s.httpsURL + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	err := s.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "grace period") {
		t.Fatalf("shutdown: %v, want the grace period named", err)
	}
}

// With OnGraceEnd, requests still running when the grace period ends are
// told to finish, and their answers reach the clients over every protocol
// before the connections close.
func TestServerShutdownGraceEndAnswers(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{}, 3)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-stop:
			http.Error(w, "stopped at shutdown", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	})
	var calls atomic.Int32
	s := startServer(t, edge.ServerConfig{ShutdownGrace: 200 * time.Millisecond, OnGraceEnd: func() {
		calls.Add(1)
		close(stop)
	}}, h)
	results := s.getEveryProtocol("/")
	for range 3 {
		<-started
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v (the requests finished after OnGraceEnd)", err)
	}
	for range 3 {
		if r := <-results; r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "stopped at shutdown") {
			t.Errorf("in-flight request: %d %q %v, want the handler's 503", r.status, r.body, r.err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnGraceEnd called %d times, want 1", n)
	}
}

// OnGraceEnd is not called when the requests finish within the grace
// period.
func TestServerShutdownInGraceSkipsOnGraceEnd(t *testing.T) {
	var calls atomic.Int32
	s := startServer(t, edge.ServerConfig{ShutdownGrace: 100 * time.Millisecond, OnGraceEnd: func() { calls.Add(1) }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("OnGraceEnd called %d times after a drained shutdown, want 0", n)
	}
}

func TestServerConfigValidate(t *testing.T) {
	cert, _ := selfSigned(t)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, c := range []struct {
		name string
		cfg  edge.ServerConfig
		msg  string
	}{
		{"nothing", edge.ServerConfig{}, "no listener"},
		{"bad https", edge.ServerConfig{HTTPSAddr: "localhost", TCPTLS: tc, QUICTLS: tc}, "HOST:PORT"},
		{"bad http", edge.ServerConfig{HTTPAddr: "8080"}, "HOST:PORT"},
		{"no tls", edge.ServerConfig{HTTPSAddr: ":0"}, "TLS configuration"},
		{"plain mode", edge.ServerConfig{HTTPAddr: ":0", Plain: "teleport"}, "teleport"},
		{"negative", edge.ServerConfig{HTTPAddr: ":0", IdleTimeout: -1}, "negative"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.msg)
		}
	}
	if _, err := edge.NewServer(edge.ServerConfig{}, protoHandler); err == nil {
		t.Error("NewServer accepted an invalid config")
	}
	// A taken port is a clear error, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = edge.NewServer(edge.ServerConfig{HTTPAddr: ln.Addr().String()}, protoHandler)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("taken port: %v", err)
	}
}
