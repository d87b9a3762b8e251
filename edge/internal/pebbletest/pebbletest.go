// Package pebbletest runs Pebble, Let's Encrypt's test ACME server, in
// process for tests: the web front end on an httptest TLS server, the
// validation authority dialling the challenge ports the test serves, and
// an in-memory CA.
package pebbletest

import (
	"crypto/x509"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Pebble is a running in-process ACME server.
type Pebble struct {
	// DirectoryURL is the ACME directory (https://127.0.0.1:port/dir).
	DirectoryURL string
	// TLSRoots trusts the directory's HTTPS certificate (httptest's
	// certificate for 127.0.0.1), for the ACME client's TrustedRoots.
	TLSRoots *x509.CertPool

	ca *ca.CAImpl
}

// New starts Pebble for the life of t. Its validation authority connects
// to httpPort for HTTP-01 and tlsPort for TLS-ALPN-01 on the address the
// identifier resolves to (use "localhost": 127.0.0.1), so a test listens on
// those ports first and passes them here. It sets PEBBLE_VA_NOSLEEP=1 (no
// random validation delays) and PEBBLE_WFE_NONCEREJECT=0 (no random
// badNonce errors) with t.Setenv, so t and its parents must not be
// parallel.
//
// Pebble's VA keeps one goroutine per instance that has no stop path; it
// idles on a channel after the test.
func New(t testing.TB, httpPort, tlsPort int) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	logger := log.New(w, "pebble ", 0)

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "the default profile"},
	})
	validator := va.New(logger, httpPort, tlsPort, false, "", store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	srv := httptest.NewUnstartedServer(front.Handler())
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &Pebble{DirectoryURL: srv.URL + wfe.DirectoryPath, TLSRoots: roots, ca: authority}
}

// IssuerRoot returns the root that Pebble's certificates chain to (what
// Pebble serves at /roots/0).
func (p *Pebble) IssuerRoot() *x509.Certificate {
	return p.ca.GetRootCert(0).Cert
}

// IssuerRoots returns a pool holding IssuerRoot, for clients of servers
// with Pebble's certificates.
func (p *Pebble) IssuerRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.IssuerRoot())
	return pool
}

// testWriter sends Pebble's log lines to t.Log until the test ends; the
// VA's goroutines may still log after that, when t.Log would panic.
type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
