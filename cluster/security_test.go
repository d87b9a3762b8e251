package cluster

// Tests named by docs/security-model.md for guarantees of a running
// agent's peer API and of the secret files in the cluster directory.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The agent's peer API (TLS, client certificate optional at the handshake
// so that joining nodes can enroll) serves nothing but enrollment to a
// client without a node certificate: every peer endpoint, also one that
// does not exist, answers 401 over HTTP, and a join or removal sent that
// way changes nothing. A client with another cluster's certificate (for
// the same node ID) gets the same 401, or is refused at the handshake when
// it presents that certificate; TLS 1.2 and plain HTTP are not served. The
// control: the agent's own node certificate is served.
func TestPeerAPIRequiresNodeCertificate(t *testing.T) {
	a, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + a.PeerAddr()
	nodeID := a.Store().node.ID()
	client := func(cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	do := func(c *http.Client, method, path, body string) (int, string, error) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	join, _ := json.Marshal(JoinRequest{ID: "intruder", RaftAddr: "127.0.0.1:1", Voter: true})
	remove, _ := json.Marshal(map[string]string{"id": nodeID})
	requests := []struct{ method, path, body string }{
		{"POST", "/peer/v1/join", string(join)},
		{"POST", "/peer/v1/apply", `{}`},
		{"POST", "/peer/v1/remove", string(remove)},
		{"GET", "/peer/v1/blobs/" + strings.Repeat("0", 64), ""},
		{"GET", "/peer/v1/ready/f/1", ""},
		{"GET", "/peer/v1/info", ""},
		{"GET", "/peer/v1/artifacts/" + strings.Repeat("0", 64), ""},
		{"POST", "/peer/v1/readindex", ""},
		{"GET", "/peer/v1/no-such-endpoint", ""},
	}

	// A client that trusts the cluster CA but has no certificate.
	noCert := a.identity.ClientTLS()
	noCert.Certificates = nil
	for _, r := range requests {
		st, body, err := do(client(noCert), r.method, r.path, r.body)
		if err != nil {
			t.Fatalf("%s %s without a certificate: %v (want an HTTP 401)", r.method, r.path, err)
		}
		if st != http.StatusUnauthorized || !strings.Contains(body, "unauthorized") {
			t.Errorf("%s %s without a certificate: %d %q, want 401 unauthorized", r.method, r.path, st, body)
		}
	}
	servers, err := a.Store().node.Servers()
	if err != nil || len(servers) != 1 || servers[0].ID != nodeID {
		t.Fatalf("unauthenticated join/remove changed the configuration: %+v (%v)", servers, err)
	}

	// Another cluster's node certificate, naming the same node. Go's
	// client sends no certificate the server's CA list does not name,
	// which gets the 401 above; one that presents it anyway is refused at
	// the handshake.
	foreignID := newTestIdentity(t, newTestCA(t), nodeID)
	foreign := foreignID.ClientTLS()
	foreign.InsecureSkipVerify = true // only the server's checks are under test
	foreign.VerifyConnection = nil
	insist := foreign.Clone()
	cert := foreign.Certificates[0]
	insist.Certificates = nil
	insist.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	for _, r := range requests {
		if st, body, err := do(client(foreign), r.method, r.path, r.body); err != nil || st != http.StatusUnauthorized {
			t.Errorf("%s %s with another cluster's certificate: %d %q %v, want 401", r.method, r.path, st, body, err)
		}
		if st, body, err := do(client(insist), r.method, r.path, r.body); err == nil {
			t.Errorf("%s %s presenting another cluster's certificate was answered: %d %q", r.method, r.path, st, body)
		}
	}

	// TLS 1.2 is refused.
	old := noCert.Clone()
	old.MaxVersion = tls.VersionTLS12
	if st, _, err := do(client(old), "GET", "/peer/v1/info", ""); err == nil {
		t.Errorf("a TLS 1.2 client was answered: %d", st)
	}

	// Plain HTTP to the TLS port is not served.
	plainBase := "http://" + a.PeerAddr()
	if resp, err := client(nil).Get(plainBase + "/peer/v1/info"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || bytes.Contains(b, []byte(nodeID)) {
			t.Errorf("plain HTTP was served: %d %q", resp.StatusCode, b)
		}
	}

	// Control: the node's own certificate is accepted.
	st, body, err := do(client(a.identity.ClientTLS()), "GET", "/peer/v1/info", "")
	if err != nil || st != http.StatusOK || !strings.Contains(body, nodeID) {
		t.Fatalf("with a node certificate: %d %q %v", st, body, err)
	}
}

// The node key is refused at load when group or others can read it, and
// loads again once the mode is 0600.
func TestNodeKeyModeRefused(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateNodeKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, NodeKeyFile)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateNodeKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %o: got %v, want a refusal saying to chmod 600", mode, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateNodeKey(dir)
	if err != nil || !again.Equal(key) {
		t.Fatalf("mode 600: %v (same key %v)", err, err == nil && again.Equal(key))
	}
}

// The gossip key file is written 0600 on the bootstrap node and on a node
// that enrolled, both hold the same key, and neither node's log holds it.
func TestGossipKeyFileMode(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	second, err := startTestAgent(t, t.TempDir(), []string{first.PeerAddr()}, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for _, a := range []*testAgent{first, second} {
		path := filepath.Join(ClusterDir(a.dir), gossipKeyFile)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", path, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, bytes.TrimSpace(b))
	}
	if !bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the enrolled node stored another gossip key than the bootstrap node's")
	}
}

// With cluster.gossip_key set on the bootstrap node, enrollment hands out
// the configured key (the one gossip uses), not the key generated into
// DATA/cluster/gossip.key at bootstrap: a node that joins with only the
// join token becomes an alive gossip member.
func TestJoinGetsConfiguredGossipKey(t *testing.T) {
	configured, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	start := func(dir string, join []string, token, gossipKey string) *Agent {
		t.Helper()
		rc := testConfig(t, dir)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		a, err := StartAgent(ctx, AgentConfig{
			Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
			Join: join, JoinToken: token, Version: "test", GossipKey: gossipKey, Logger: rc.Logger,
			Autopilot: AutopilotConfig{DeadServerTimeout: 2 * time.Second, Interval: 100 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	firstDir, secondDir := t.TempDir(), t.TempDir()
	first := start(firstDir, nil, "", configured)
	second := start(secondDir, []string{first.PeerAddr()}, first.JoinTokenCreated, "")

	want, _ := ParseGossipKey(configured)
	got, err := readGossipKey(ClusterDir(secondDir))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the joiner stored a gossip key other than the configured one (err %v)", err)
	}
	waitFor(t, 30*time.Second, "2 alive gossip members on both nodes", func() bool {
		for _, a := range []*Agent{first, second} {
			alive := 0
			for _, m := range a.Members() {
				if m.Status == StatusAlive {
					alive++
				}
			}
			if alive != 2 {
				return false
			}
		}
		return true
	})
}

// Every /v1 endpoint that docs/api.md documents refuses a request without
// the admin token, or with a wrong one, with 401 before doing anything:
// the deployed function, its versions and the blob are unchanged
// afterwards. The list comes from the documentation, so a new endpoint is
// covered as soon as it is documented.
func TestAPIEveryDocumentedEndpointNeedsToken(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, nil)
	sha := h.upload(testModule(100, 7))
	if r := h.doJSON("POST", "/v1/functions/fn", `{"sha256":"`+sha+`","size":100}`); r.status != http.StatusCreated {
		t.Fatalf("deploy: %d %s", r.status, r.body)
	}
	before := h.do("GET", "/v1/functions/fn/versions", nil)
	params := strings.NewReplacer("{sha256}", sha, "{name}", "fn", "{namespace}", "fn", "{ns}", "fn", "{key...}", "k", "{key}", "k")
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile("`(GET|POST|PUT|DELETE|HEAD) (/v1/[^` ]*)").FindAllStringSubmatch(string(doc), -1) {
		method, path := m[1], params.Replace(m[2])
		if seen[method+" "+path] {
			continue
		}
		seen[method+" "+path] = true
		for _, auth := range []string{"", "Bearer gjn_wrong", "Bearer " + testToken[:len(testToken)-1]} {
			r := h.do(method, path, strings.NewReader(`{"sha256":"`+sha+`","size":100,"value":"x"}`), "Authorization", auth, "Content-Type", "application/json")
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: %d %s, want 401", method, path, auth, r.status, r.body)
			}
		}
	}
	if len(seen) < 15 {
		t.Fatalf("found only %d endpoints in docs/api.md; has its format changed?", len(seen))
	}
	if after := h.do("GET", "/v1/functions/fn/versions", nil); after.status != 200 || after.body != before.body {
		t.Errorf("requests without the token changed the function: %d %s, was %s", after.status, after.body, before.body)
	}
	if r := h.do("HEAD", "/v1/blobs/"+sha, nil); r.status != 200 {
		t.Errorf("requests without the token removed the blob: %d", r.status)
	}
}
