package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HelloBody is what the baseline servers answer.
const HelloBody = "hello, world"

func hello(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, HelloBody)
}

// Baseline is a running hello-world server on loopback.
type Baseline struct {
	// URL is the server's root URL.
	URL string
	// ClientTLS trusts the server's certificate; nil for plain HTTP.
	ClientTLS *tls.Config

	stop func() error  // stops the server
	done chan struct{} // closed when the serve goroutine has returned
	err  error         // the serve goroutine's error, read after done
}

// Close stops the server and waits for its goroutine to end.
func (b *Baseline) Close() error {
	err := b.stop()
	<-b.done
	if b.err != nil && !errors.Is(b.err, http.ErrServerClosed) {
		return errors.Join(err, b.err)
	}
	return err
}

// serve runs fn on a goroutine owned by b until b.Close.
func (b *Baseline) serve(fn func() error) {
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		b.err = fn()
	}()
}

// StartNativeHello starts a plain net/http HTTP/1.1 server on 127.0.0.1
// answering HelloBody: the baseline for the edge over HTTP/1.1.
func StartNativeHello() (*Baseline, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadgen: listening for the native baseline: %w", err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(hello),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	b := &Baseline{URL: "http://" + ln.Addr().String() + "/", stop: srv.Close}
	b.serve(func() error { return srv.Serve(ln) })
	return b, nil
}

// StartNativeH2Hello starts a net/http server over TLS on 127.0.0.1
// answering HelloBody with HTTP/2 (HTTP/1.1 too): the baseline for the
// edge over HTTP/2. It uses a self-signed certificate made in memory,
// trusted by b.ClientTLS.
func StartNativeH2Hello() (*Baseline, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadgen: listening for the HTTP/2 baseline: %w", err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(hello),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrency},
	}
	b := &Baseline{
		URL:       "https://" + ln.Addr().String() + "/",
		ClientTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		stop:      srv.Close,
	}
	b.serve(func() error { return srv.ServeTLS(ln, "", "") })
	return b, nil
}

// StartBareH3Hello starts a bare quic-go HTTP/3 server on 127.0.0.1
// answering HelloBody: the baseline for the edge over HTTP/3. It uses a
// self-signed certificate made in memory, trusted by b.ClientTLS, and an
// explicit quic.Config with 0-RTT off.
func StartBareH3Hello() (*Baseline, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("loadgen: listening for the HTTP/3 baseline: %w", err)
	}
	srv := &http3.Server{
		Handler: http.HandlerFunc(hello),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS13,
		},
		QUICConfig: &quic.Config{
			Allow0RTT:            false,
			HandshakeIdleTimeout: 5 * time.Second,
			MaxIdleTimeout:       30 * time.Second,
			MaxIncomingStreams:   MaxConcurrency,
		},
		IdleTimeout: 2 * time.Minute,
	}
	b := &Baseline{
		URL:       "https://" + conn.LocalAddr().String() + "/",
		ClientTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		// The server closes its QUIC listener, not the socket it was given.
		stop: func() error { return errors.Join(srv.Close(), conn.Close()) },
	}
	b.serve(func() error { return srv.Serve(conn) })
	return b, nil
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost, valid for a day, and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loadgen: generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loadgen: generating a serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "loadgen baseline"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loadgen: creating a certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loadgen: parsing the certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// NativeHello starts StartNativeHello for a test or benchmark and returns
// its URL and a close function, also registered with tb.Cleanup.
func NativeHello(tb testing.TB) (url string, closeFn func()) {
	tb.Helper()
	b, err := StartNativeHello()
	if err != nil {
		tb.Fatal(err)
	}
	return b.URL, closeOnce(tb, b)
}

// BareH3Hello starts StartBareH3Hello for a test or benchmark and returns
// its URL, a client TLS config that trusts it, and a close function, also
// registered with tb.Cleanup.
func BareH3Hello(tb testing.TB) (url string, clientTLS *tls.Config, closeFn func()) {
	tb.Helper()
	b, err := StartBareH3Hello()
	if err != nil {
		tb.Fatal(err)
	}
	return b.URL, b.ClientTLS, closeOnce(tb, b)
}

func closeOnce(tb testing.TB, b *Baseline) func() {
	var once sync.Once
	f := func() {
		once.Do(func() {
			if err := b.Close(); err != nil {
				tb.Errorf("closing the baseline at %s: %v", b.URL, err)
			}
		})
	}
	tb.Cleanup(f)
	return f
}
