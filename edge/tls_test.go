package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLSConfigValidate checks that every problem is reported with the
// field's config name, and that good configs pass.
func TestTLSConfigValidate(t *testing.T) {
	acme := func(mod func(*TLSConfig)) TLSConfig {
		c := TLSConfig{Mode: TLSModeACME, DataDir: "/d", Email: "ops@example.org", Names: []string{"example.org"}}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  TLSConfig
		want string // "" means valid; otherwise the error's prefix
	}{
		{"default mode is internal", TLSConfig{DataDir: "/d"}, ""},
		{"internal with names", TLSConfig{DataDir: "/d", Names: []string{"a.example", "*.b.example", "10.0.0.1", "::1"}}, ""},
		{"internal needs a data dir", TLSConfig{}, "tls.data_dir: required in mode internal"},
		{"unknown mode", TLSConfig{Mode: "letsencrypt", DataDir: "/d"}, `tls.mode: unknown mode "letsencrypt"`},
		{"empty name", TLSConfig{DataDir: "/d", Names: []string{""}}, "tls.names: \"\": empty name"},
		{"name with port", TLSConfig{DataDir: "/d", Names: []string{"a.example:443"}}, "tls.names: \"a.example:443\": not a host name"},
		{"URL as name", TLSConfig{DataDir: "/d", Names: []string{"https://a.example"}}, "tls.names: \"https://a.example\": not a host name"},
		{"inner wildcard", TLSConfig{DataDir: "/d", Names: []string{"a.*.example"}}, "tls.names: \"a.*.example\": '*'"},
		{"empty label", TLSConfig{DataDir: "/d", Names: []string{"a..example"}}, "tls.names: \"a..example\": bad label"},
		{"cert file outside files", TLSConfig{DataDir: "/d", CertFile: "c.pem"}, "tls.cert_file: only used in mode files"},
		{"email outside acme", TLSConfig{DataDir: "/d", Email: "a@b"}, "tls.email: only used in mode acme"},
		{"on demand outside acme", TLSConfig{DataDir: "/d", OnDemand: true}, "tls.on_demand: only used in mode acme"},
		{"CA root outside acme", TLSConfig{Mode: TLSModeFiles, CertFile: "c.pem", KeyFile: "k.pem", CARoots: x509.NewCertPool()}, "tls.ca_root: only used in mode acme"},
		{"no HTTP-01 outside acme", TLSConfig{DataDir: "/d", DisableHTTPChallenge: true}, "tls.disable_http_challenge: only used in mode acme"},
		{"no TLS-ALPN-01 outside acme", TLSConfig{DataDir: "/d", DisableTLSALPNChallenge: true}, "tls.disable_tls_alpn_challenge: only used in mode acme"},
		{"acme", acme(nil), ""},
		{"acme without data dir or storage", acme(func(c *TLSConfig) { c.DataDir = ""; c.Storage = nil }), "tls.data_dir: required in mode acme"},
		{"acme on demand without names", acme(func(c *TLSConfig) { c.Names = nil; c.OnDemand = true }), ""},
		{"acme private CA", acme(func(c *TLSConfig) { c.CA = "https://127.0.0.1:14000/dir" }), ""},
		{"acme plain http CA", acme(func(c *TLSConfig) { c.CA = "http://ca.example/dir" }), "tls.ca: \"http://ca.example/dir\" is not an https URL"},
		{"acme needs email", acme(func(c *TLSConfig) { c.Email = "" }), "tls.email: required in mode acme"},
		{"acme bad email", acme(func(c *TLSConfig) { c.Email = "ops" }), "tls.email: \"ops\" is not an email address"},
		{"acme wildcard", acme(func(c *TLSConfig) { c.Names = []string{"*.example.org"} }), "tls.names: \"*.example.org\": wildcards need the DNS-01 challenge"},
		{"acme IP", acme(func(c *TLSConfig) { c.Names = []string{"192.0.2.1"} }), "tls.names: \"192.0.2.1\": IP addresses need mode internal or files"},
		{"acme no challenge", acme(func(c *TLSConfig) { c.DisableHTTPChallenge, c.DisableTLSALPNChallenge = true, true }), "tls.disable_tls_alpn_challenge: both"},
		{"acme bad port", acme(func(c *TLSConfig) { c.ACMEHTTPPort = 70000 }), "tls.acme_http_port: 70000 is not a port"},
		{"acme bad tls port", acme(func(c *TLSConfig) { c.ACMETLSPort = -1 }), "tls.acme_tls_port: -1 is not a port"},
		{"files", TLSConfig{Mode: TLSModeFiles, CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"files needs cert", TLSConfig{Mode: TLSModeFiles, KeyFile: "k.pem"}, "tls.cert_file: required in mode files"},
		{"files needs key", TLSConfig{Mode: TLSModeFiles, CertFile: "c.pem"}, "tls.key_file: required in mode files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Fatalf("error %q, want prefix %q", err, tc.want)
			}
		})
	}
}

// writeTestPair writes a self-signed certificate for names and its key under
// dir, and returns the paths and the certificate.
func writeTestPair(t *testing.T, dir, prefix string, names ...string) (certPath, keyPath string, cert *x509.Certificate) {
	t.Helper()
	return writeTestPairUntil(t, dir, prefix, time.Now().Add(24*time.Hour), names...)
}

// writeTestPairUntil is writeTestPair for a certificate valid until notAfter.
func writeTestPairUntil(t *testing.T, dir, prefix string, notAfter time.Time, names ...string) (certPath, keyPath string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: prefix},
		NotBefore:             notAfter.Add(-25 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: it is its own trust anchor
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, prefix+".crt"), filepath.Join(dir, prefix+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, cert
}

func tlsPoolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestTLSFilesServesAndReloads proves mode files serves the pair in a real
// HTTP/2 handshake, and serves a replaced pair without a restart.
func TestTLSFilesServesAndReloads(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, first := writeTestPair(t, dir, "first", "localhost", "127.0.0.1")
	tl, err := NewTLS(context.Background(), TLSConfig{Mode: TLSModeFiles, CertFile: certPath, KeyFile: keyPath}, nil, tlsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tl.files.mu.Lock()
	tl.files.interval = 0 // look at the files on every handshake
	tl.files.mu.Unlock()
	port := tlsServeHTTPS(t, tl.TCPConfig())

	if body, _ := getOverTLS(t, "localhost", port, tlsPoolOf(first)); body != "hello over HTTP/2.0" {
		t.Fatalf("body %q", body)
	}

	// Replace both files (renames, as cert tools do) with a new pair.
	newCert, newKey, second := writeTestPair(t, dir, "second", "localhost")
	later := time.Now().Add(time.Minute)
	for _, p := range []string{newCert, newKey} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(newKey, keyPath); err != nil {
		t.Fatal(err)
	}
	// Only the key is new: the pair does not match, so the old one stays.
	state, err := tlsHandshake(port, "localhost", tlsPoolOf(first))
	if err != nil {
		t.Fatalf("half-replaced pair: %v", err)
	}
	if !state.PeerCertificates[0].Equal(first) {
		t.Fatal("a mismatched pair replaced the served certificate")
	}
	if err := os.Rename(newCert, certPath); err != nil {
		t.Fatal(err)
	}
	// The expiry metric sees the new pair before any handshake does.
	if leaves := tl.servedLeaves(); len(leaves) != 1 || !leaves[0].Equal(second) {
		t.Fatal("the metrics' view still has the replaced certificate")
	}
	state, err = tlsHandshake(port, "localhost", tlsPoolOf(second))
	if err != nil {
		t.Fatalf("after replacing the files: %v", err)
	}
	if !state.PeerCertificates[0].Equal(second) {
		t.Fatal("the replaced pair is not served")
	}

	// An expired pair does not replace a valid one; the metrics see the
	// current certificate without waiting for a handshake.
	oldCert, oldKey, _ := writeTestPairUntil(t, dir, "expired", time.Now().Add(-time.Hour), "localhost")
	later = later.Add(time.Minute)
	for _, p := range []string{oldCert, oldKey} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(oldKey, keyPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(oldCert, certPath); err != nil {
		t.Fatal(err)
	}
	if leaves := tl.servedLeaves(); len(leaves) != 1 || !leaves[0].Equal(second) {
		t.Fatal("an expired replacement is served (or the metrics' view is not the served certificate)")
	}
	if state, err = tlsHandshake(port, "localhost", tlsPoolOf(second)); err != nil || !state.PeerCertificates[0].Equal(second) {
		t.Fatalf("after an expired replacement: %v, want the valid certificate still served", err)
	}
}

// TestTLSFilesErrors proves mode files refuses to start with a missing file
// or a key of another certificate, naming the field.
func TestTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, _ := writeTestPair(t, dir, "a", "localhost")
	_, otherKey, _ := writeTestPair(t, dir, "b", "localhost")
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	encPKCS8, encTrad, chainBackwards := filepath.Join(dir, "enc8.key"), filepath.Join(dir, "enctrad.key"), filepath.Join(dir, "chain.crt")
	leafPEM, _ := os.ReadFile(certPath)
	otherPEM, _ := os.ReadFile(strings.TrimSuffix(otherKey, ".key") + ".crt")
	for path, data := range map[string][]byte{
		encPKCS8:       pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")}),
		encTrad:        pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte("opaque")}),
		chainBackwards: append(otherPEM, leafPEM...),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, cert, key string
		want            string
		notExist        bool
	}{
		{"missing cert", missing, keyPath, "tls.cert_file: " + missing + " does not exist", true},
		{"missing key", certPath, missing, "tls.key_file: " + missing + " does not exist", true},
		{"key of another cert", certPath, otherKey, "tls.key_file: " + otherKey + " does not match the certificate", false},
		{"cert not PEM", notPEM, keyPath, "tls.cert_file: " + notPEM + " holds no PEM CERTIFICATE block", false},
		{"key not PEM", certPath, notPEM, "tls.key_file: " + notPEM + " holds no PEM PRIVATE KEY block", false},
		{"PKCS#8 key with a passphrase", certPath, encPKCS8, "tls.key_file: " + encPKCS8 + " is encrypted with a passphrase", false},
		{"traditional key with a passphrase", certPath, encTrad, "tls.key_file: " + encTrad + " is encrypted with a passphrase", false},
		{"chain with the leaf second", chainBackwards, keyPath, "tls.cert_file: " + chainBackwards + " has the certificate of tls.key_file's key as certificate 2: put it first", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTLS(context.Background(), TLSConfig{Mode: TLSModeFiles, CertFile: tc.cert, KeyFile: tc.key}, nil, tlsTestLogger(t))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want prefix %q", err, tc.want)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v", !tc.notExist)
			}
		})
	}
}

// TestTLSConfigsProtocols checks the ALPN lists and minimum versions of
// the TCP and QUIC configs in each mode.
func TestTLSConfigsProtocols(t *testing.T) {
	tl := newInternalTLS(t, t.TempDir(), nil, nil)
	tcp, quic := tl.TCPConfig(), tl.QUICConfig()
	if got := strings.Join(tcp.NextProtos, ","); got != "h2,http/1.1" {
		t.Errorf("internal TCP protos %s", got)
	}
	if got := strings.Join(quic.NextProtos, ","); got != "h3" || quic.MinVersion != 0x0304 || tcp.MinVersion != 0x0303 {
		t.Errorf("QUIC protos %s min %x; TCP min %x", got, quic.MinVersion, tcp.MinVersion)
	}
	if tcp == tl.TCPConfig() {
		t.Error("TCPConfig returns a shared config; callers may modify theirs")
	}
	next := &tlsIdentityHandler{}
	if h, ok := tl.HTTPChallengeHandler(next).(*tlsIdentityHandler); !ok || h != next {
		t.Error("HTTPChallengeHandler is not the identity outside mode acme")
	}
	if err := tl.ManageSync(context.Background(), []string{"a.example"}); err != nil {
		t.Errorf("ManageSync outside mode acme: %v", err)
	}
}

type tlsIdentityHandler struct{ n int }

func (h *tlsIdentityHandler) ServeHTTP(http.ResponseWriter, *http.Request) { h.n++ }
