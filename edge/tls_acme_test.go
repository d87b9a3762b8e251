package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/gojinn/gojinn/edge/internal/pebbletest"
)

// acmeTestTimeout bounds one certificate order against in-process Pebble.
const acmeTestTimeout = 60 * time.Second

// tlsListenTCP reserves a loopback port for a challenge listener.
func tlsListenTCP(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// tlsServePlainHTTP serves h on ln until the test ends.
func tlsServePlainHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("plain HTTP: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("plain HTTP shutdown: %v", err)
		}
		<-done
	})
}

func startACMETLS(t *testing.T, p *pebbletest.Pebble, mod func(*TLSConfig), allow func(string) bool) *TLS {
	t.Helper()
	cfg := TLSConfig{
		Mode:    TLSModeACME,
		DataDir: t.TempDir(),
		Email:   "ops@gojinn.example",
		CA:      p.DirectoryURL,
		CARoots: p.TLSRoots,
	}
	mod(&cfg)
	tl, err := NewTLS(context.Background(), cfg, allow, tlsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl
}

// assertChainsTo checks that the verified chain of state ends at root.
func assertChainsTo(t *testing.T, state *tls.ConnectionState, root *x509.Certificate) {
	t.Helper()
	if state == nil || len(state.VerifiedChains) == 0 {
		t.Fatal("no verified chain")
	}
	chain := state.VerifiedChains[0]
	if !chain[len(chain)-1].Equal(root) {
		t.Fatalf("chain ends at %s, not Pebble's root %s", chain[len(chain)-1].Subject, root.Subject)
	}
	if leaf := chain[0]; leaf.VerifyHostname("localhost") != nil {
		t.Fatalf("leaf is for %v, not localhost", leaf.DNSNames)
	}
}

// TestACMEPebbleHTTP01OverHTTP3 obtains a certificate for localhost from
// an in-process Pebble with HTTP-01 (answered by HTTPChallengeHandler on
// a plain-HTTP listener the VA dials), then serves it over HTTP/3 with
// QUICConfig: an http3 client trusting only Pebble's issuing root gets the
// answer, and the chain ends at that root. A second TLS on the same data
// dir (a restart) serves the same certificate from storage.
func TestACMEPebbleHTTP01OverHTTP3(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	httpLn, httpPort := tlsListenTCP(t)
	p := pebbletest.New(t, httpPort, 1) // TLS-ALPN-01 is off: nothing dials port 1
	dataDir := t.TempDir()
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.DataDir = dataDir
		c.DisableTLSALPNChallenge = true
		c.ACMEHTTPPort = httpPort
	}, nil)
	tlsServePlainHTTP(t, httpLn, tl.HTTPChallengeHandler(http.NotFoundHandler()))

	ctx, cancel := context.WithTimeout(context.Background(), acmeTestTimeout)
	defer cancel()
	if err := tl.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("obtaining a certificate from Pebble: %v", err)
	}

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h3 := &http3.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello over "+r.Proto)
		}),
		TLSConfig:  tl.QUICConfig(),
		QUICConfig: &quic.Config{Allow0RTT: false, MaxIdleTimeout: 30 * time.Second},
	}
	served := make(chan error, 1)
	go func() { served <- h3.Serve(udp) }()
	t.Cleanup(func() {
		if err := h3.Close(); err != nil {
			t.Errorf("closing HTTP/3 server: %v", err)
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
			t.Errorf("HTTP/3 serve: %v", err)
		}
		udp.Close()
	})

	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.IssuerRoots()},
		QUICConfig:      &quic.Config{MaxIdleTimeout: 30 * time.Second},
	}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	resp, err := client.Get("https://localhost:" + strconv.Itoa(port) + "/")
	if err != nil {
		t.Fatalf("HTTP/3 GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "hello over HTTP/3.0" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	assertChainsTo(t, resp.TLS, p.IssuerRoot())
	issued := resp.TLS.PeerCertificates[0]

	// A restart on the same data dir loads the certificate from storage
	// instead of ordering a new one.
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	tl2 := startACMETLS(t, p, func(c *TLSConfig) {
		c.DataDir = dataDir
		c.DisableTLSALPNChallenge = true
		c.ACMEHTTPPort = httpPort
	}, nil)
	if err := tl2.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	state, err := tlsHandshake(tlsServeHTTPS(t, tl2.TCPConfig()), "localhost", p.IssuerRoots())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if !state.PeerCertificates[0].Equal(issued) {
		t.Error("a restart ordered a new certificate instead of loading the stored one")
	}
}

// TestACMEPebbleTLSALPN01 configures localhost in Names with only
// TLS-ALPN-01 on: NewTLS starts obtaining it in the background, Pebble's
// VA validates through the TLS listener running TCPConfig (acme-tls/1), and
// that listener then serves the issued certificate.
func TestACMEPebbleTLSALPN01(t *testing.T) {
	tlsLn, tlsPort := tlsListenTCP(t)
	p := pebbletest.New(t, 1, tlsPort) // HTTP-01 is off: nothing dials port 1
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.Names = []string{"localhost"}
		c.DisableHTTPChallenge = true
		c.ACMETLSPort = tlsPort
	}, nil)
	if got := tl.TCPConfig().NextProtos; len(got) != 3 || got[2] != "acme-tls/1" {
		t.Fatalf("TCP protos %v, want acme-tls/1 offered", got)
	}
	tlsServeHTTPSOn(t, tlsLn, tl.TCPConfig())

	var state tls.ConnectionState
	var err error
	tlsWaitFor(t, acmeTestTimeout, func() bool {
		state, err = tlsHandshake(tlsPort, "localhost", p.IssuerRoots())
		return err == nil
	}, func() string { return "no certificate from Pebble yet; last handshake: " + tlsErrString(err) })
	assertChainsTo(t, &state, p.IssuerRoot())
}

// TestACMEOnDemandAsksAllow proves on-demand issuance obtains a
// certificate during the first handshake for a name allow accepts, and
// refuses a name it does not (without asking the CA).
func TestACMEOnDemandAsksAllow(t *testing.T) {
	httpLn, httpPort := tlsListenTCP(t)
	p := pebbletest.New(t, httpPort, 1)
	var mu sync.Mutex
	var asked []string
	allow := func(host string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, host)
		return host == "localhost"
	}
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.OnDemand = true
		c.DisableTLSALPNChallenge = true
		c.ACMEHTTPPort = httpPort
	}, allow)
	tlsServePlainHTTP(t, httpLn, tl.HTTPChallengeHandler(http.NotFoundHandler()))
	port := tlsServeHTTPS(t, tl.TCPConfig())

	if _, err := tlsHandshake(port, "denied.localhost", p.IssuerRoots()); err == nil {
		t.Fatal("a name allow refuses got a certificate")
	}
	state, err := tlsHandshake(port, "localhost", p.IssuerRoots())
	if err != nil {
		t.Fatalf("on-demand handshake: %v", err)
	}
	assertChainsTo(t, &state, p.IssuerRoot())
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 || asked[0] != "denied.localhost" {
		t.Errorf("allow was asked %v", asked)
	}
}

// tlsWaitFor polls cond until it holds or the deadline passes.
func tlsWaitFor(t *testing.T, within time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, why())
		}
		<-tick.C
	}
}

func tlsErrString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestACMEManageAsyncNameByName: names managed in the background are
// obtained each on its own, so a name the CA refuses (Pebble blocks
// pebble.letsencrypt.org) does not stop the next one, as ManageSync's
// first error did, and the node's start never waits for the CA.
func TestACMEManageAsyncNameByName(t *testing.T) {
	httpLn, httpPort := tlsListenTCP(t)
	p := pebbletest.New(t, httpPort, 1)
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.DisableTLSALPNChallenge = true
		c.ACMEHTTPPort = httpPort
	}, nil)
	tlsServePlainHTTP(t, httpLn, tl.HTTPChallengeHandler(http.NotFoundHandler()))

	if err := tl.ManageAsync([]string{"pebble.letsencrypt.org", "localhost"}); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tl.TCPConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	handshake := func(name string) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: p.IssuerRoots()})
		if err == nil {
			c.Close()
		}
		return err
	}
	deadline := time.Now().Add(acmeTestTimeout)
	for {
		err := handshake("localhost")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for localhost after %v (last handshake: %v): the refused name held it up", acmeTestTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := handshake("pebble.letsencrypt.org"); err == nil {
		t.Fatal("a verified handshake for the name Pebble refuses")
	}
}
