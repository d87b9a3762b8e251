package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copySecretFile copies src to dst with mode 0600, as `install -m 600`
// (or `cp -p` of a 0600 file) does.
func copySecretFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Replacing a dead bootstrap node, as docs/operations.md ("Replacing a
// dead node") says: the cluster CA (DATA/cluster/ca/ca.crt and ca.key)
// and the join secret's hash (DATA/cluster/join-secret.sha256) are copied
// from the bootstrap node to another voter, which is restarted. Before the
// copy that voter does not enroll anyone, nor with a copied CA key that
// others can read (mode 644); with the key at 0600 and the bootstrap node
// gone for good, a new node enrolls through it with the original join
// token, joins Raft and gossip, and gets the cluster's gossip key.
func TestAgentEnrollsThroughAVoterGivenTheCA(t *testing.T) {
	boot := startKeyedAgent(t, t.TempDir(), keyedAgentOpts{deadServer: 2 * time.Second})
	token := boot.JoinTokenCreated
	nodes := []*keyedAgent{boot}
	for range 2 {
		nodes = append(nodes, startKeyedAgent(t, t.TempDir(), keyedAgentOpts{join: []string{boot.PeerAddr()}, token: token, deadServer: 2 * time.Second}))
	}
	pollGossip(t, 30*time.Second, "3 alive members", func() error { return oneGossipCluster(nodes...) })
	waitFor(t, 30*time.Second, "3 voters", func() bool { return voters(boot) == 3 })
	heir := nodes[1]

	// Control: without the CA, the voter serves no enrollment: the request
	// reaches the rest of the peer API, which wants a node certificate.
	tok, err := ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	probeKey, err := LoadOrCreateNodeKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	refused := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := RequestJoin(ctx, heir.PeerAddr(), tok, probeKey, "probe-node")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 401 {
			t.Fatalf("enrolling at a voter %s: %v, want a 401", when, err)
		}
	}
	refused("without the CA")
	restartHeir := func() {
		t.Helper()
		dir, id := heir.dir, heir.Store().Node().ID()
		heir.stop()
		waitFor(t, 30*time.Second, "gossip to see the stopped voter go", func() bool {
			for _, m := range boot.Members() {
				if m.Name == id {
					return m.Status != StatusAlive
				}
			}
			return true
		})
		heir = startKeyedAgent(t, dir, keyedAgentOpts{join: []string{boot.PeerAddr(), nodes[2].PeerAddr()}, deadServer: 2 * time.Second})
		nodes[1] = heir
		waitFor(t, 30*time.Second, "the restarted voter back in Raft at its new address", func() bool { return inRaftAt(boot, heir) })
	}

	// The operator copies the files and restarts the voter; first with a
	// CA key others can read, which the voter refuses to use.
	from, to := ClusterDir(boot.dir), ClusterDir(heir.dir)
	if err := os.Mkdir(filepath.Join(to, ClusterCADirName), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(ClusterCADirName, caCertFile), filepath.Join(ClusterCADirName, caKeyFile), JoinSecretHashFile} {
		copySecretFile(t, filepath.Join(from, f), filepath.Join(to, f))
	}
	heirKey := filepath.Join(to, ClusterCADirName, caKeyFile)
	if err := os.Chmod(heirKey, 0o644); err != nil {
		t.Fatal(err)
	}
	restartHeir()
	refused("whose copied CA key is mode 644")
	if err := os.Chmod(heirKey, 0o600); err != nil {
		t.Fatal(err)
	}
	restartHeir()

	// The bootstrap node dies for good; the autopilot removes it.
	bootID := boot.Store().Node().ID()
	boot.stop()
	survivors := nodes[1:]
	waitFor(t, 30*time.Second, "a leader without the bootstrap node in Raft", func() bool {
		servers, err := heir.Store().Node().Servers()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.ID == bootID {
				return false
			}
		}
		addr, _ := heir.Store().Node().Leader()
		return addr != ""
	})

	// A new node enrolls through the voter alone, with the original token.
	fresh := startKeyedAgent(t, t.TempDir(), keyedAgentOpts{join: []string{heir.PeerAddr()}, token: token, deadServer: 2 * time.Second})
	pollGossip(t, 30*time.Second, "the new node alive with the survivors", func() error {
		return oneGossipCluster(append(survivors, fresh)...)
	})
	waitFor(t, 30*time.Second, "the new node a voter in Raft", func() bool { return inRaftAt(heir, fresh) && voters(heir) == 3 })
	want, _ := readGossipKey(ClusterDir(heir.dir))
	got, err := readGossipKey(ClusterDir(fresh.dir))
	if err != nil || want == nil || string(got) != string(want) {
		t.Fatalf("the new node's gossip key differs from the cluster's (err %v)", err)
	}
	if !fresh.identity.CACert().Equal(heir.identity.CACert()) {
		t.Fatal("the new node's certificate is not from the cluster CA")
	}
}

// voters counts the voters in a's Raft configuration.
func voters(a *keyedAgent) int {
	servers, err := a.Store().Node().Servers()
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range servers {
		if s.Voter {
			n++
		}
	}
	return n
}
