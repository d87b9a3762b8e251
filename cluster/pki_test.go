package cluster

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pkiLeakCheck fails the test when goroutines started during it are still
// running once its cleanups ran (polling with a deadline).
func pkiLeakCheck(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d running, %d before the test\n%s", runtime.NumGoroutine(), base, buf[:n])
				return
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an outcome
		}
	})
}

// newTestCA creates a cluster CA in a temporary directory.
func newTestCA(t *testing.T) *ClusterCA {
	t.Helper()
	ca, created, err := LoadOrCreateClusterCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil || !created {
		t.Fatalf("LoadOrCreateClusterCA: created=%v err=%v", created, err)
	}
	return ca
}

// newTestIdentity gives node nodeID an identity signed by ca in a new
// directory.
func newTestIdentity(t *testing.T, ca *ClusterCA, nodeID string) *NodeIdentity {
	t.Helper()
	dir := t.TempDir()
	key, err := LoadOrCreateNodeKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueNode(nodeID, &key.PublicKey, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveNodeCert(dir, der, ca.Cert().Raw); err != nil {
		t.Fatal(err)
	}
	id, err := LoadNodeIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tlsResult is what one side of a handshake saw.
type tlsResult struct {
	err   error
	state tls.ConnectionState
}

// tlsHandshake runs one TLS connection over real TCP on loopback: the
// server handshakes and writes "ok"; the client handshakes and reads it
// (with TLS 1.3 a client learns that the server refused its certificate
// only when it reads). It returns what each side saw.
func tlsHandshake(t *testing.T, server, client *tls.Config) (srv, cli tlsResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan tlsResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- tlsResult{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- tlsResult{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- tlsResult{err: err, state: tc.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	cli.err = tc.Handshake()
	if cli.err == nil {
		buf := make([]byte, 2)
		_, cli.err = io.ReadFull(tc, buf)
		cli.state = tc.ConnectionState()
	}
	srv = <-done
	return srv, cli
}

func TestClusterCACreateReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster", "ca")
	if _, err := LoadClusterCA(dir); !errors.Is(err, ErrNoClusterCA) {
		t.Fatalf("LoadClusterCA on nothing: %v, want ErrNoClusterCA", err)
	}
	ca, created, err := LoadOrCreateClusterCA(dir)
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %o, want 600", fi.Mode().Perm())
	}
	c := ca.Cert()
	if !c.IsCA || !c.MaxPathLenZero || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("root: IsCA=%v MaxPathLenZero=%v alg=%v", c.IsCA, c.MaxPathLenZero, c.PublicKeyAlgorithm)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("root valid for %v, want about 10 years", life)
	}
	again, created, err := LoadOrCreateClusterCA(dir)
	if err != nil || created {
		t.Fatalf("reload: created=%v err=%v", created, err)
	}
	if again.Fingerprint() != ca.Fingerprint() {
		t.Error("reload produced another CA")
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Errorf("temporary directories left beside the CA: %v", entries)
	}

	// A key others can read is refused with the fix in the message.
	if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClusterCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v, want a chmod hint", err)
	}
	// Half a pair is never replaced.
	if err := os.Remove(filepath.Join(dir, caCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateClusterCA(dir); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("half a CA: %v, want incomplete", err)
	}
}

func TestClusterCAConcurrentCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	const n = 8
	type result struct {
		fp      [32]byte
		key     *ecdsa.PrivateKey
		created bool
		err     error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			ca, created, err := LoadOrCreateClusterCA(filepath.Join(dir, ClusterCADirName))
			if err != nil {
				results <- result{err: err}
				return
			}
			key, err := LoadOrCreateNodeKey(dir)
			results <- result{fp: ca.Fingerprint(), key: key, created: created, err: err}
		}()
	}
	var first result
	creators := 0
	for i := range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.created {
			creators++
		}
		if i == 0 {
			first = r
		} else if r.fp != first.fp || !r.key.Equal(first.key) {
			t.Error("concurrent starts ended with different CAs or node keys")
		}
	}
	if creators != 1 {
		t.Errorf("%d callers report creating the CA, want 1", creators)
	}
}

func TestClusterCAIssueNode(t *testing.T) {
	ca := newTestCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := ca.IssueNode("node-1", &key.PublicKey, []net.IP{net.ParseIP("10.0.0.7")}, []string{"n1.example.com."})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert())
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: NodeServerName, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("verify for %v: %v", use, err)
		}
	}
	if err := cert.VerifyHostname("10.0.0.7"); err != nil {
		t.Errorf("IP SAN: %v", err)
	}
	if err := cert.VerifyHostname("n1.example.com"); err != nil {
		t.Errorf("DNS SAN: %v", err)
	}
	if id, err := nodeIDFromCert(cert); err != nil || id != "node-1" || cert.Subject.CommonName != "node-1" {
		t.Errorf("node ID: %q %v (CN %q)", id, err, cert.Subject.CommonName)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "gojinn://node/node-1" {
		t.Errorf("URI SANs %v", cert.URIs)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 364*24*time.Hour || life > 367*24*time.Hour {
		t.Errorf("node certificate valid for %v, want a year", life)
	}

	for name, f := range map[string]func() error{
		"bad node ID": func() error { _, err := ca.IssueNode("a/b", &key.PublicKey, nil, nil); return err },
		"ed25519 key": func() error {
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			_, err := ca.IssueNode("n", pub, nil, nil)
			return err
		},
		"too many names": func() error {
			_, err := ca.IssueNode("n", &key.PublicKey, nil, make([]string, maxNodeCertNames+1))
			return err
		},
	} {
		if err := f(); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestNodeIdentityFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadNodeIdentity(dir); !errors.Is(err, ErrNoNodeIdentity) {
		t.Fatalf("empty dir: %v, want ErrNoNodeIdentity", err)
	}
	ca, id, err := BootstrapIdentity(dir, "seed", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.NodeID() != "seed" || !id.CACert().Equal(ca.Cert()) {
		t.Fatalf("identity %q, CA match %v", id.NodeID(), id.CACert().Equal(ca.Cert()))
	}
	for _, f := range []string{NodeKeyFile, filepath.Join(ClusterCADirName, caKeyFile)} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want 0600", f, err, fi.Mode())
		}
	}
	// A restart keeps the identity.
	_, again, err := BootstrapIdentity(dir, "seed", nil, nil)
	if err != nil || !again.Certificate().Equal(id.Certificate()) {
		t.Fatalf("restart re-issued the certificate (err %v)", err)
	}

	// A certificate for another key is refused before anything is written.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := ca.IssueNode("seed", &other.PublicKey, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveNodeCert(dir, der, ca.Cert().Raw); !errors.Is(err, ErrInvalidIdentity) {
		t.Errorf("foreign key: %v, want ErrInvalidIdentity", err)
	}
	// So is one from another CA.
	key, _ := LoadOrCreateNodeKey(dir)
	foreign := newTestCA(t)
	der, _ = foreign.IssueNode("seed", &key.PublicKey, nil, nil)
	if err := SaveNodeCert(dir, der, ca.Cert().Raw); !errors.Is(err, ErrInvalidIdentity) {
		t.Errorf("certificate of another CA: %v, want ErrInvalidIdentity", err)
	}
	if id, err := LoadNodeIdentity(dir); err != nil || !id.Certificate().Equal(again.Certificate()) {
		t.Errorf("a refused save changed the stored identity (err %v)", err)
	}
}

func TestNodeIdentityMutualTLS(t *testing.T) {
	pkiLeakCheck(t)
	ca := newTestCA(t)
	a, b := newTestIdentity(t, ca, "node-a"), newTestIdentity(t, ca, "node-b")
	srv, cli := tlsHandshake(t, a.ServerTLS(), b.ClientTLS())
	if srv.err != nil || cli.err != nil {
		t.Fatalf("mutual TLS: server %v, client %v", srv.err, cli.err)
	}
	if got, err := PeerNodeID(srv.state); err != nil || got != "node-b" {
		t.Errorf("server sees %q %v, want node-b", got, err)
	}
	if got, err := PeerNodeID(cli.state); err != nil || got != "node-a" {
		t.Errorf("client sees %q %v, want node-a", got, err)
	}
	if srv.state.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", srv.state.Version)
	}
}

func TestNodeIdentityRefusesAnotherCA(t *testing.T) {
	pkiLeakCheck(t)
	ours, theirs := newTestCA(t), newTestCA(t)
	a := newTestIdentity(t, ours, "node-a")
	x := newTestIdentity(t, theirs, "node-a") // same name, other cluster

	// The stranger as client: even one that trusts our CA is refused by
	// our server, which trusts only our CA.
	xc := x.ClientTLS()
	xc.RootCAs = a.ClientTLS().RootCAs
	xcert := xc.Certificates[0]
	xc.Certificates = nil
	// Send it even though the server asks for certificates of its CA.
	xc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &xcert, nil }
	srv, cli := tlsHandshake(t, a.ServerTLS(), xc)
	var uerr x509.UnknownAuthorityError
	if !errors.As(srv.err, &uerr) || cli.err == nil {
		t.Errorf("foreign client: server %v, client %v; want an unknown authority and a failure", srv.err, cli.err)
	}
	// The stranger as server: even one that would accept our certificate
	// is refused by our client.
	xs := x.ServerTLS()
	xs.ClientCAs = a.ServerTLS().ClientCAs
	srv, cli = tlsHandshake(t, xs, a.ClientTLS())
	if cli.err == nil {
		t.Error("our client accepted a server of another cluster")
	}
	if !errors.As(cli.err, &uerr) {
		t.Errorf("client error %v, want an unknown authority", cli.err)
	}
	_ = srv
}

func TestNodeIdentityRefusesNoCertAndNonNodeCert(t *testing.T) {
	pkiLeakCheck(t)
	ca := newTestCA(t)
	a := newTestIdentity(t, ca, "node-a")

	anon := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: a.ClientTLS().RootCAs, ServerName: NodeServerName}
	if srv, _ := tlsHandshake(t, a.ServerTLS(), anon); srv.err == nil {
		t.Error("server accepted a client without a certificate")
	}
	// The API listener lets it in, but the connection carries no node.
	srv, cli := tlsHandshake(t, a.APIServerTLS(), anon)
	if srv.err != nil || cli.err != nil {
		t.Fatalf("API listener, no client cert: server %v, client %v", srv.err, cli.err)
	}
	if _, err := PeerNodeID(srv.state); !errors.Is(err, ErrPeerNotAuthenticated) {
		t.Errorf("PeerNodeID without a cert: %v, want ErrPeerNotAuthenticated", err)
	}

	// A certificate of our CA that names no node (say, a future admin
	// client certificate) is not a node.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "admin"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	plain := anon.Clone()
	plain.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}
	srv, _ = tlsHandshake(t, a.ServerTLS(), plain)
	if !errors.Is(srv.err, ErrInvalidIdentity) {
		t.Errorf("CA-signed non-node certificate: server %v, want ErrInvalidIdentity", srv.err)
	}
}

func TestNodeIdentityRequireNode(t *testing.T) {
	pkiLeakCheck(t)
	ca := newTestCA(t)
	a, b := newTestIdentity(t, ca, "node-a"), newTestIdentity(t, ca, "node-b")
	srv := httptest.NewUnstartedServer(RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := PeerNodeID(*r.TLS)
		io.WriteString(w, id)
	})))
	srv.TLS = a.APIServerTLS()
	srv.StartTLS()
	defer srv.Close()

	get := func(c *tls.Config) (int, string) {
		tr := &http.Transport{TLSClientConfig: c, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(b.ClientTLS()); code != 200 || body != "node-b" {
		t.Errorf("node client: %d %q", code, body)
	}
	anon := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: b.ClientTLS().RootCAs, ServerName: NodeServerName}
	if code, body := get(anon); code != http.StatusUnauthorized || !strings.Contains(body, CodeUnauthorized) {
		t.Errorf("anonymous client: %d %q, want 401", code, body)
	}
}
