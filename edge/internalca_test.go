package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newInternalTLS(t *testing.T, dataDir string, names []string, allow func(string) bool) *TLS {
	t.Helper()
	tl, err := NewTLS(context.Background(), TLSConfig{Mode: TLSModeInternal, DataDir: dataDir, Names: names}, allow, tlsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl
}

func exportedPool(t *testing.T, dataDir string) (*x509.CertPool, *x509.Certificate) {
	t.Helper()
	pemBytes, err := ExportCARoot(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := parseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("exported root is not PEM")
	}
	return pool, root
}

// TestInternalCAPersistsAndServes proves the internal CA is created once
// under DataDir/tls/ca (P-256, ~10 years, key 0600), reused by a second
// NewTLS on the same directory (a restart), and that the edge's TCP config
// serves HTTP/2 to clients trusting only the exported root, for
// localhost, 127.0.0.1 and a configured name.
func TestInternalCAPersistsAndServes(t *testing.T) {
	dir := t.TempDir()
	newInternalTLS(t, dir, []string{"edge.test"}, nil)
	_, root1 := exportedPool(t, dir)

	fi, err := os.Stat(filepath.Join(dir, "tls", "ca", "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("root key mode %v, want 0600", perm)
	}
	if pub, ok := root1.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("root key %T, want ECDSA P-256", root1.PublicKey)
	}
	if life := root1.NotAfter.Sub(root1.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("root valid for %v, want about 10 years", life)
	}
	if !root1.IsCA {
		t.Error("root is not a CA")
	}

	// A restart: the same root signs, so clients keep trusting the node.
	tl := newInternalTLS(t, dir, []string{"edge.test"}, nil)
	pool, root2 := exportedPool(t, dir)
	if !root1.Equal(root2) {
		t.Fatal("a second NewTLS on the same data dir made a new root")
	}

	port := tlsServeHTTPS(t, tl.TCPConfig())
	for _, host := range []string{"localhost", "127.0.0.1", "edge.test"} {
		body, state := getOverTLS(t, host, port, pool)
		if body != "hello over HTTP/2.0" {
			t.Errorf("%s: body %q", host, body)
		}
		if state.Version < tls.VersionTLS12 {
			t.Errorf("%s: TLS version %x", host, state.Version)
		}
		chain := state.VerifiedChains[0]
		if !chain[len(chain)-1].Equal(root1) {
			t.Errorf("%s: chain does not end at the internal root", host)
		}
		if leaf := chain[0]; leaf.NotAfter.Sub(leaf.NotBefore) > 32*24*time.Hour {
			t.Errorf("%s: leaf valid for %v, want about 30 days", host, leaf.NotAfter.Sub(leaf.NotBefore))
		}
	}
}

// TestInternalCAUnknownNames proves that a name outside the configured
// ones gets its own signed leaf only when allow accepts it; any other name
// gets the default leaf, which a verifying client refuses.
func TestInternalCAUnknownNames(t *testing.T) {
	dir := t.TempDir()
	allow := func(host string) bool { return host == "fn.example" }
	tl := newInternalTLS(t, dir, nil, allow)
	pool, _ := exportedPool(t, dir)
	port := tlsServeHTTPS(t, tl.TCPConfig())

	state, err := tlsHandshake(port, "fn.example", pool)
	if err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	if got := state.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "fn.example" {
		t.Errorf("allowed name got a leaf for %v", got)
	}
	// Upper case and a trailing dot are the same name.
	if _, err := tlsHandshake(port, "FN.example.", pool); err != nil {
		t.Errorf("allowed name in other spelling: %v", err)
	}

	_, err = tlsHandshake(port, "other.example", pool)
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("name nobody allowed: err %v, want a hostname mismatch", err)
	}
	if hostErr.Certificate.VerifyHostname("localhost") != nil {
		t.Errorf("refused name did not get the default leaf: %v", hostErr.Certificate.DNSNames)
	}
}

// TestInternalCARenewsNearExpiry proves leaves are re-signed in
// GetCertificate once less than the renewal margin is left, and cached
// until then.
func TestInternalCARenewsNearExpiry(t *testing.T) {
	ca, err := newInternalCA(t.TempDir(), nil, func(string) bool { return true }, tlsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	hello := func(name string) *x509.Certificate {
		t.Helper()
		c, err := ca.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	def, dyn := hello("localhost"), hello("dyn.example")
	if hello("localhost") != def || hello("dyn.example") != dyn {
		t.Fatal("leaves are not cached")
	}
	start := time.Now()
	ca.now = func() time.Time { return start.Add(caLeafValidity - caLeafRenewBefore + time.Hour) }
	def2, dyn2 := hello("localhost"), hello("dyn.example")
	if def2.SerialNumber.Cmp(def.SerialNumber) == 0 || dyn2.SerialNumber.Cmp(dyn.SerialNumber) == 0 {
		t.Fatal("a leaf near expiry was served again")
	}
	if !def2.NotAfter.After(def.NotAfter) {
		t.Errorf("renewed leaf expires %v, not after %v", def2.NotAfter, def.NotAfter)
	}
}

// TestExportCARootWithoutCA proves the export explains what to do when
// the node never ran in mode internal.
func TestExportCARootWithoutCA(t *testing.T) {
	_, err := ExportCARoot(t.TempDir())
	if !errors.Is(err, ErrNoCARoot) {
		t.Fatalf("err %v, want ErrNoCARoot", err)
	}
	if !strings.Contains(err.Error(), "start the node once with tls mode internal") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

// TestInternalCAIncomplete proves a CA directory missing one half is
// refused instead of silently replaced (clients may trust the old root).
func TestInternalCAIncomplete(t *testing.T) {
	dir := t.TempDir()
	newInternalTLS(t, dir, nil, nil)
	if err := os.Remove(filepath.Join(dir, "tls", "ca", "root.crt")); err != nil {
		t.Fatal(err)
	}
	_, err := NewTLS(context.Background(), TLSConfig{DataDir: dir}, nil, tlsTestLogger(t))
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("err %v, want an incomplete CA error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls", "ca", "root.key")); err != nil {
		t.Errorf("the remaining key was touched: %v", err)
	}
}

// TestInternalCAConcurrentCreation proves that processes starting at once
// on an empty data dir end up with one root: each builds its CA aside and
// renames it into place, and the losers load the winner's.
func TestInternalCAConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	roots := make([]*x509.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := newInternalCA(dir, nil, nil, tlsTestLogger(t))
			if err == nil {
				roots[i] = ca.root
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	_, exported := exportedPool(t, dir)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if !roots[i].Equal(exported) {
			t.Errorf("start %d uses a root that is not the one on disk", i)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("leftovers beside the CA: %v", entries)
	}
}

// TestInternalCADirWithOtherContent proves a CA directory holding neither
// file (but something else) is reported, not overwritten or looped on.
func TestInternalCADirWithOtherContent(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tls", "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls", "ca", "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewTLS(context.Background(), TLSConfig{DataDir: dir}, nil, tlsTestLogger(t))
	if err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("err %v, want the directory reported", err)
	}
}
