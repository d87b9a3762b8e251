package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestJoinTokenEncodeParse(t *testing.T) {
	ca := newTestCA(t)
	tok, hash := NewJoinToken(ca)
	if tok.CAFingerprint != ca.Fingerprint() || hash != tok.SecretHash() {
		t.Fatal("token does not carry the CA fingerprint or the hash")
	}
	enc := tok.Encode()
	if len(enc) != 87 || strings.ContainsAny(enc, "+/=") {
		t.Errorf("encoded token %d chars %q, want 87 base64url", len(enc), enc)
	}
	back, err := ParseJoinToken("  " + enc + "\n")
	if err != nil || back != tok {
		t.Fatalf("round trip: %v", err)
	}

	// Nothing but Encode shows the secret.
	secretHex := hex.EncodeToString(tok.secret[:])
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "token", tok)
	js, _ := json.Marshal(tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), logged.String(), string(js)} {
		if strings.Contains(s, enc) || strings.Contains(s, secretHex) || strings.Contains(s, base64.StdEncoding.EncodeToString(tok.secret[:])) {
			t.Errorf("secret shown in %q", s)
		}
	}

	other, _ := NewJoinToken(ca)
	if other.secret == tok.secret {
		t.Error("two tokens share a secret")
	}
}

func TestJoinTokenMalformed(t *testing.T) {
	valid := JoinToken{CAFingerprint: [32]byte{1}, secret: [32]byte{2}}
	raw, _ := base64.RawURLEncoding.DecodeString(valid.Encode())
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	with := func(i int, v byte) []byte {
		b := bytes.Clone(raw)
		b[i] = v
		return b
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "  ", "empty"},
		{"not base64url", "abc+/def", "not base64url"},
		{"standard base64 padding", base64.StdEncoding.EncodeToString(raw), "not base64url"},
		{"cut short", valid.Encode()[:60], "decodes to 45 bytes"},
		{"typed", "abc", "decodes to 2 bytes"},
		{"an admin token", "gjn_" + enc(raw[:32]), "this is an admin token"},
		{"garbage of a token's length", enc(with(0, 200)), "does not start like a join token"},
		{"too long", enc(append(bytes.Clone(raw), 0)), "decodes to 66 bytes"},
		{"newer version", enc(with(0, 2)), "upgrade this node"},
		{"version zero", enc(with(0, 0)), "does not start like a join token"},
		{"zero secret", enc(append(bytes.Clone(raw[:33]), make([]byte, 32)...)), "all zeros"},
	} {
		_, err := ParseJoinToken(tc.in)
		if !errors.Is(err, ErrInvalidJoinToken) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidJoinToken saying %q", tc.name, err, tc.want)
		}
		if strings.TrimSpace(tc.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
			t.Errorf("%s: the error echoes the token", tc.name)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add(JoinToken{CAFingerprint: [32]byte{1}, secret: [32]byte{2}}.Encode())
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidJoinToken) {
				t.Fatalf("error %v does not wrap ErrInvalidJoinToken", err)
			}
			return
		}
		again, err := ParseJoinToken(tok.Encode())
		if err != nil || again != tok {
			t.Fatalf("re-encoding does not round trip: %v", err)
		}
	})
}

func TestJoinSecretHashFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	if _, err := LoadJoinSecretHash(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v, want fs.ErrNotExist", err)
	}
	want := [32]byte{9, 8, 7}
	if err := SaveJoinSecretHash(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadJoinSecretHash(dir); err != nil || got != want {
		t.Fatalf("reload: %x %v", got, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, JoinSecretHashFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	os.WriteFile(filepath.Join(dir, JoinSecretHashFile), []byte("zz\n"), 0o600)
	if _, err := LoadJoinSecretHash(dir); err == nil || !strings.Contains(err.Error(), "new join token") {
		t.Errorf("garbage: %v", err)
	}
}

// joinSeed is a seed node serving JoinHandler on its peer API over TLS.
type joinSeed struct {
	ca       *ClusterCA
	id       *NodeIdentity
	token    JoinToken
	srv      *httptest.Server
	requests atomic.Int32 // requests that reached the handler
	admitted []string
	mu       sync.Mutex
	clock    time.Time
}

func (s *joinSeed) addr() string { return s.srv.Listener.Addr().String() }

func (s *joinSeed) advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = s.clock.Add(d)
}

func newJoinSeed(t *testing.T, opts JoinOptions) *joinSeed {
	t.Helper()
	ca, id, err := BootstrapIdentity(t.TempDir(), "seed", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &joinSeed{ca: ca, id: id, clock: time.Unix(1_800_000_000, 0)}
	tok, hash := NewJoinToken(ca)
	s.token = tok
	opts.Admit = func(_ context.Context, nodeID string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if nodeID == "taken" {
			return errors.New("a live member already uses this node ID")
		}
		s.admitted = append(s.admitted, nodeID)
		return nil
	}
	opts.GossipKeys = func() ([][]byte, error) {
		return [][]byte{[]byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210")}, nil
	}
	opts.now = func() time.Time {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.clock
	}
	h := JoinHandler(ca, hash, opts)
	mux := http.NewServeMux()
	mux.Handle(JoinPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.TLS = id.APIServerTLS()
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func TestJoinHappyPath(t *testing.T) {
	pkiLeakCheck(t)
	seed := newJoinSeed(t, JoinOptions{})
	dir := t.TempDir()
	key, err := LoadOrCreateNodeKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseJoinToken(seed.token.Encode()) // as an operator passes it
	if err != nil {
		t.Fatal(err)
	}
	resp, err := RequestJoin(testCtx(t), seed.addr(), tok, key, "node-2")
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GossipKey) != "0123456789abcdef0123456789abcdef" || resp.NodeID != "node-2" {
		t.Errorf("response: node %q gossip key %q", resp.NodeID, resp.GossipKey)
	}
	if ring := resp.Keyring(); len(ring) != 2 || string(ring[0]) != string(resp.GossipKey) || string(ring[1]) != "fedcba9876543210" {
		t.Errorf("response: gossip keyring %q, want the primary then the secondary", ring)
	}
	if len(seed.admitted) != 1 || seed.admitted[0] != "node-2" {
		t.Errorf("Admit saw %v", seed.admitted)
	}
	if err := SaveNodeCert(dir, resp.NodeCert, resp.CACert); err != nil {
		t.Fatal(err)
	}
	joined, err := LoadNodeIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The new node and the seed now authenticate each other, both ways.
	for _, pair := range [][2]*NodeIdentity{{seed.id, joined}, {joined, seed.id}} {
		srv, cli := tlsHandshake(t, pair[0].ServerTLS(), pair[1].ClientTLS())
		if srv.err != nil || cli.err != nil {
			t.Fatalf("mutual TLS %s <- %s: server %v, client %v", pair[0].NodeID(), pair[1].NodeID(), srv.err, cli.err)
		}
		if got, _ := PeerNodeID(srv.state); got != pair[1].NodeID() {
			t.Errorf("server %s sees %q", pair[0].NodeID(), got)
		}
	}
}

func TestJoinWrongSecret(t *testing.T) {
	pkiLeakCheck(t)
	seed := newJoinSeed(t, JoinOptions{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := seed.token
	bad.secret[0] ^= 1
	resp, err := RequestJoin(testCtx(t), seed.addr(), bad, key, "node-2")
	if resp != nil || !errors.Is(err, ErrJoinRefused) {
		t.Fatalf("wrong secret: resp %v err %v, want ErrJoinRefused", resp, err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeJoinRefused || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "current join token") {
		t.Errorf("error %v, want a 403 join_refused telling what to do", err)
	}
	if len(seed.admitted) != 0 {
		t.Errorf("Admit called for a wrong secret: %v", seed.admitted)
	}
	// Admit can still refuse a node with the right secret.
	_, err = RequestJoin(testCtx(t), seed.addr(), seed.token, key, "taken")
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "already uses") {
		t.Errorf("Admit refusal: %v", err)
	}
}

func TestJoinRefusesUnpinnedSeed(t *testing.T) {
	pkiLeakCheck(t)
	seed := newJoinSeed(t, JoinOptions{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// A token whose fingerprint is not the seed's CA: the joiner refuses
	// the seed before sending anything (a MITM never sees the secret).
	bad := seed.token
	bad.CAFingerprint[0] ^= 1
	_, err := RequestJoin(testCtx(t), seed.addr(), bad, key, "node-2")
	if !errors.Is(err, ErrSeedNotTrusted) {
		t.Fatalf("wrong fingerprint: %v, want ErrSeedNotTrusted", err)
	}
	// A seed of another cluster, given this cluster's token.
	other := newJoinSeed(t, JoinOptions{})
	_, err = RequestJoin(testCtx(t), other.addr(), seed.token, key, "node-2")
	if !errors.Is(err, ErrSeedNotTrusted) {
		t.Fatalf("seed of another cluster: %v, want ErrSeedNotTrusted", err)
	}
	// A server that sends the right CA certificate in its chain but a leaf
	// that CA did not sign (an impostor copying the public CA cert).
	impostorCA := newTestCA(t)
	imp := newTestIdentity(t, impostorCA, "seed")
	cfg := imp.APIServerTLS()
	cfg.Certificates[0].Certificate = [][]byte{imp.Certificate().Raw, seed.ca.Cert().Raw}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	_, err = RequestJoin(testCtx(t), srv.Listener.Addr().String(), seed.token, key, "node-2")
	if !errors.Is(err, ErrSeedNotTrusted) {
		t.Fatalf("impostor leaf: %v, want ErrSeedNotTrusted", err)
	}
	if n := seed.requests.Load() + other.requests.Load(); n != 0 {
		t.Errorf("%d join requests were sent to untrusted seeds", n)
	}
}

func TestJoinRateLimit(t *testing.T) {
	pkiLeakCheck(t)
	seed := newJoinSeed(t, JoinOptions{MaxFailures: 3, FailureRefill: time.Minute})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := seed.token
	bad.secret[5] ^= 0xff
	for i := range 3 {
		if _, err := RequestJoin(testCtx(t), seed.addr(), bad, key, "node-2"); !errors.Is(err, ErrJoinRefused) {
			t.Fatalf("attempt %d: %v, want ErrJoinRefused", i+1, err)
		}
	}
	// Now even the right secret is not looked at.
	_, err := RequestJoin(testCtx(t), seed.addr(), seed.token, key, "node-2")
	var ae *APIError
	if !errors.Is(err, ErrJoinRateLimited) || !errors.As(err, &ae) || ae.RetryAfter != time.Minute {
		t.Fatalf("after 3 failures: %v (retry after %v), want ErrJoinRateLimited with a minute to wait", err, ae)
	}
	if len(seed.admitted) != 0 {
		t.Fatal("a rate-limited request was processed")
	}
	seed.advance(time.Minute) // one attempt regained
	if _, err := RequestJoin(testCtx(t), seed.addr(), seed.token, key, "node-2"); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
}

func TestJoinHandlerRejectsBadRequests(t *testing.T) {
	ca := newTestCA(t)
	tok, hash := NewJoinToken(ca)
	h := JoinHandler(ca, hash, JoinOptions{MaxFailures: 1000})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := func(cn string) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	forged := csr("n")
	forged[len(forged)-3] ^= 1 // break the signature
	body := func(req JoinTokenRequest) string {
		b, _ := json.Marshal(req)
		return string(b)
	}
	good := JoinTokenRequest{Version: 1, NodeID: "n", Secret: tok.secret[:], CSR: csr("n")}
	mod := func(f func(*JoinTokenRequest)) string { r := good; f(&r); return body(r) }
	for _, tc := range []struct {
		name, method, body string
		noTLS              bool
		status             int
		code, want         string
	}{
		{"GET", "GET", "", false, 405, CodeMethodNotAllowed, "POST"},
		{"plain HTTP", "POST", body(good), true, 400, CodeBadRequest, "needs TLS"},
		{"not JSON", "POST", "{", false, 400, CodeBadRequest, "malformed"},
		{"too big", "POST", strings.Repeat(" ", maxJoinBody+1), false, 413, CodeBodyTooLarge, "at most"},
		{"version", "POST", mod(func(r *JoinTokenRequest) { r.Version = 2 }), false, 400, CodeBadRequest, "same gojinn version"},
		{"short secret", "POST", mod(func(r *JoinTokenRequest) { r.Secret = r.Secret[:31] }), false, 403, CodeJoinRefused, "join token"},
		{"bad node ID", "POST", mod(func(r *JoinTokenRequest) { r.NodeID = "../x" }), false, 400, CodeInvalid, "NodeID"},
		{"bad CSR", "POST", mod(func(r *JoinTokenRequest) { r.CSR = []byte("junk") }), false, 400, CodeBadRequest, "does not parse"},
		{"forged CSR", "POST", mod(func(r *JoinTokenRequest) { r.CSR = forged }), false, 400, CodeBadRequest, "not signed"},
		{"CSR for another node", "POST", mod(func(r *JoinTokenRequest) { r.CSR = csr("m") }), false, 400, CodeBadRequest, "names node"},
		{"good", "POST", body(good), false, 200, "", ""},
	} {
		r := httptest.NewRequest(tc.method, JoinPath, strings.NewReader(tc.body))
		if !tc.noTLS {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, w.Code, tc.status, w.Body)
			continue
		}
		if tc.code == "" {
			continue
		}
		var e struct{ Error APIError }
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s: %s, want code %s saying %q", tc.name, w.Body, tc.code, tc.want)
		}
		if strings.Contains(w.Body.String(), hex.EncodeToString(tok.secret[:])) {
			t.Errorf("%s: the answer shows the secret", tc.name)
		}
	}
}

func TestJoinLimiterKeysAndBounds(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:5000":           "192.0.2.1/32",
		"[2001:db8:1:2:3::4]:5000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:1": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.1]:5000":  "192.0.2.1/32",
		"[fe80::1%eth0]:5000":      "fe80::/64",
		"not an address":           "invalid Prefix",
	} {
		if got := remoteKey(in).String(); got != want {
			t.Errorf("remoteKey(%q) = %s, want %s", in, got, want)
		}
	}
	l := newFailLimiter(2, time.Second, 3)
	now := time.Unix(0, 0)
	for i := range 10 {
		l.fail(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32), now)
	}
	if len(l.buckets) > 3 {
		t.Errorf("limiter tracks %d addresses, bound is 3", len(l.buckets))
	}
	k := remoteKey("192.0.2.1:1")
	l.fail(k, now)
	l.fail(k, now)
	if ok, wait := l.allow(k, now); ok || wait != time.Second {
		t.Errorf("after 2 failures: allow=%v wait=%v", ok, wait)
	}
	if ok, _ := l.allow(k, now.Add(time.Second)); !ok {
		t.Error("not allowed after the refill")
	}
}
