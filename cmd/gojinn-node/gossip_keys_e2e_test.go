package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// cluster.gossip_key and cluster.gossip_keys reach the agent: the node
// gossips with the keyring they make (logged by fingerprint, primary
// first, never the keys), stores it in DATA/cluster/gossip.key, and hands
// all of it to a node that enrolls with only the join token.
func TestAgentGossipKeyring(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agents (a few seconds); make test runs it")
	}
	keys := make([]string, 2)
	for i := range keys {
		k, err := cluster.GenerateGossipKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	fingerprint := func(s string) string {
		raw, err := cluster.ParseGossipKey(s)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		return hex.EncodeToString(sum[:8])
	}
	logged := `"keys":["` + fingerprint(keys[0]) + `","` + fingerprint(keys[1]) + `"]`
	stored := keys[0] + "\n" + keys[1] + "\n"

	dir := t.TempDir()
	first := startAgentNode(t, filepath.Join(dir, "n1"), `gossip_key = "`+keys[0]+`"`+"\n"+`gossip_keys = ["`+keys[1]+`"]`+"\n")
	second := startAgentNode(t, filepath.Join(dir, "n2"), "", "--join", first.peer, "--join-token", first.joinToken)
	for _, n := range []*agentNode{first, second} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(n.stderr.String(), logged) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no `gossip started` line with keys %s\n%s", n.data, logged, n.stderr.String())
			}
			time.Sleep(20 * time.Millisecond) // polling the log
		}
		b, err := os.ReadFile(filepath.Join(n.data, "cluster", "gossip.key"))
		if err != nil || string(b) != stored {
			t.Errorf("%s: gossip.key does not hold the keyring, primary first (err %v)", n.data, err)
		}
	}
	first.stop()
	second.stop()
	for _, n := range []*agentNode{first, second} {
		for _, k := range keys {
			if strings.Contains(n.stderr.String(), k) {
				t.Errorf("%s: a gossip key reached the log", n.data)
			}
		}
	}
}
