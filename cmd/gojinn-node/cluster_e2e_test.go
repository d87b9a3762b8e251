package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// agentNode is a `gojinn-node agent --cluster` started by a test.
type agentNode struct {
	*devNode
	peer, joinToken string
}

var (
	peerRE  = regexp.MustCompile(`^\s+peer:\s+(\S+)`)
	tokenRE = regexp.MustCompile(`cluster join token \([^)]*\): (\S+)`)
)

func startAgentNode(t *testing.T, dir, clusterTOML string, extra ...string) *agentNode {
	t.Helper()
	conf := writeAgentConfig(t, dir, clusterTOML)
	n := &agentNode{devNode: &devNode{t: t, data: filepath.Join(dir, "data")}}
	lines := n.launch(append([]string{"agent", "--config", conf}, extra...), func(string) string { return "" })
	for _, line := range lines {
		if m := peerRE.FindStringSubmatch(line); m != nil {
			n.peer = m[1]
		}
		if m := tokenRE.FindStringSubmatch(line); m != nil {
			n.joinToken = m[1]
		}
	}
	if n.peer == "" || n.admin == "" || n.http == "" {
		n.cancel()
		t.Fatalf("incomplete agent banner (peer %q admin %q http %q)\nstderr: %s", n.peer, n.admin, n.http, n.stderr.String())
	}
	n.plainClient = &http.Client{Timeout: 30 * time.Second}
	n.h1Client, n.h2 = n.plainClient, n.plainClient
	n.closeH3 = func() {}
	t.Cleanup(n.stop)
	return n
}

// writeAgentConfig writes dir/node.toml for a cluster agent with its data
// in dir/data and every listener on 127.0.0.1:0, clusterTOML appended to
// its [cluster] table, and returns its path.
func writeAgentConfig(t *testing.T, dir, clusterTOML string) string {
	return writeNodeConfig(t, dir, "", `[cluster]
enabled = true
peer_listen = "127.0.0.1:0"
gossip_bind = "127.0.0.1:0"
profile = "local"
dead_server_timeout = "2s"
`+clusterTOML)
}

// writeNodeConfig writes dir/node.toml for an agent with its data in
// dir/data and every listener on 127.0.0.1:0, edgeTOML appended to its
// [edge] table and tail to the file, and returns its path.
func writeNodeConfig(t *testing.T, dir, edgeTOML, tail string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "node.toml")
	// node_name defaults to the host name, which the nodes of an
	// in-process cluster share: live members' names must differ.
	body := `data_dir = "` + filepath.Join(dir, "data") + `"
node_name = "` + filepath.Base(dir) + `"
[edge]
https = "127.0.0.1:0"
http = "127.0.0.1:0"
http_mode = "serve"
` + edgeTOML + `[tls]
mode = "internal"
[admin]
listen = "127.0.0.1:0"
[raft]
bind = "127.0.0.1:0"
` + tail
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// Three agent processes' worth of nodes in one test: the first bootstraps,
// two join with its token; a deploy through a joined node's admin API
// answers on every node; `members` shows the three with their roles; the
// leader goes away and the survivors take the next deploy.
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes (about 15 s); make test runs it")
	}
	dir := t.TempDir()
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	tokenFile := filepath.Join(dir, "join-token")
	first := startAgentNode(t, filepath.Join(dir, "n1"), `join_token_file = "`+tokenFile+`"`+"\n")
	if first.joinToken == "" || first.token == "" {
		t.Fatalf("bootstrap banner lacks the join token or the admin token")
	}
	second := startAgentNode(t, filepath.Join(dir, "n2"), "", "--join", first.peer, "--join-token", first.joinToken)
	// The third reads the token from the file the first wrote.
	third := startAgentNode(t, filepath.Join(dir, "n3"), `join_token_file = "`+tokenFile+`"`+"\n", "--join", first.peer)
	nodes := []*agentNode{first, second, third}

	// Wait for three alive members, each with a Raft role.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list []cluster.MemberInfo
		_ = json.Unmarshal([]byte(first.cli(0, "members", "--json")), &list)
		roles := map[string]int{}
		for _, m := range list {
			if m.Status == "alive" {
				roles[m.Role]++
			}
		}
		if roles["leader"] == 1 && roles["voter"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members: %+v", list)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if table := first.cli(0, "members"); !strings.Contains(table, "leader") || strings.Count(table, "alive") != 3 {
		t.Fatalf("members table:\n%s", table)
	}

	// Deploy through the third node; every node answers.
	out := third.cli(0, "deploy", "raw", raw, "--route", "/raw")
	if !strings.Contains(out, "deployed raw version 1") {
		t.Fatalf("deploy: %q", out)
	}
	for i, n := range nodes {
		if code, body, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 200 || body == "" {
			t.Fatalf("node %d: %d %q", i+1, code, body)
		}
	}

	// The first node (the leader, having bootstrapped) stops; the others
	// elect a leader and take a deploy.
	first.stop()
	out = second.cli(0, "deploy", "raw2", raw, "--route", "/raw2")
	if !strings.Contains(out, "deployed raw2 version 1") {
		t.Fatalf("deploy after the leader stopped: %q", out)
	}
	for _, n := range []*agentNode{second, third} {
		if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/raw2"); code != 200 {
			t.Fatalf("after failover: %d", code)
		}
	}
}

// Five nodes through the binary's code path: three servers vote, two more
// join through one seed and become non-voters; `members --json` shows each
// with its role, region and version; one deploy answers on every edge; a
// KV value written before the leader dies is read back linearizably on a
// survivor, which also takes the next deploy.
func TestClusterFiveNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five nodes (about 10 s); make test runs it")
	}
	dir := t.TempDir()
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	region := func(i int) string { return fmt.Sprintf("region = \"r%d\"\n", i) }
	// The first three are the initial servers: the cluster elects its
	// first leader once all three are there.
	first := startAgentNode(t, filepath.Join(dir, "n1"), region(1)+"bootstrap_expect = 3\n")
	nodes := []*agentNode{first}
	join := func(i int) {
		nodes = append(nodes, startAgentNode(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), region(i), "--join", first.peer, "--join-token", first.joinToken))
	}
	join(2)
	join(3)
	waitMembers(t, first, func(roles map[string]int) bool { return roles["leader"] == 1 && roles["voter"] == 2 })
	// Two more join through the same one seed and become non-voters.
	join(4)
	join(5)
	members := waitMembers(t, first, func(roles map[string]int) bool {
		return roles["leader"] == 1 && roles["voter"] == 2 && roles["non-voter"] == 2
	})
	for _, m := range members {
		n := nodeNamed(t, nodes, m.Name)
		i := slices.Index(nodes, n) + 1
		if want := fmt.Sprintf("r%d", i); m.Region != want || m.Version != version || m.RaftAddr == "" {
			t.Fatalf("member %d: region %q (want %q), version %q (want %q), raft address %q", i, m.Region, want, m.Version, version, m.RaftAddr)
		}
		if nonVoter := m.Role == "non-voter"; nonVoter != (i > 3) {
			t.Fatalf("member %d is a %s; the first three vote, the later two do not", i, m.Role)
		}
	}

	// One deploy, five edges.
	if out := nodes[4].cli(0, "deploy", "raw", raw, "--route", "/raw"); !strings.Contains(out, "deployed raw version 1") {
		t.Fatalf("deploy: %q", out)
	}
	for i, n := range nodes {
		if code, body, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 200 || body == "" {
			t.Fatalf("node %d: %d %q", i+1, code, body)
		}
	}
	nodes[3].cli(0, "kv", "put", "raw", "greeting", "survives")

	// Kill the leader; a survivor reads the value linearizably and takes a
	// deploy.
	var leader *agentNode
	var survivors []*agentNode
	for _, m := range waitMembers(t, first, func(roles map[string]int) bool { return roles["leader"] == 1 }) {
		if m.Role == "leader" {
			leader = nodeNamed(t, nodes, m.Name)
		}
	}
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	leader.stop()
	s := survivors[len(survivors)-1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out, errb bytes.Buffer
		code := runEnv(context.Background(), []string{"kv", "get", "raw", "greeting", "--linearizable", "--addr", s.admin, "--token", s.token}, &out, &errb, func(string) string { return "" })
		if code == 0 && strings.TrimSpace(out.String()) == "survives" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("linearizable read after the leader died: exit %d %q %q", code, out.String(), errb.String())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if out := s.cli(0, "deploy", "raw2", raw, "--route", "/raw2"); !strings.Contains(out, "deployed raw2 version 1") {
		t.Fatalf("deploy after the leader died: %q", out)
	}
	for i, n := range survivors {
		if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/raw2"); code != 200 {
			t.Fatalf("survivor %d after failover: %d", i+1, code)
		}
	}
	// The autopilot replaces the dead voter with a non-voter.
	waitMembers(t, s, func(roles map[string]int) bool {
		return roles["leader"] == 1 && roles["voter"] == 2 && roles["non-voter"] == 1
	})
}

// waitMembers polls n's `members --json` until the alive members' roles
// satisfy ok, and returns them.
func waitMembers(t *testing.T, n *agentNode, ok func(roles map[string]int) bool) []cluster.MemberInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list, alive []cluster.MemberInfo
		_ = json.Unmarshal([]byte(n.cli(0, "members", "--json")), &list)
		roles := map[string]int{}
		for _, m := range list {
			if m.Status == "alive" {
				roles[m.Role]++
				alive = append(alive, m)
			}
		}
		if ok(roles) {
			return alive
		}
		if time.Now().After(deadline) {
			t.Fatalf("members: %+v", list)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// nodeNamed returns the test node whose data directory holds node ID id.
func nodeNamed(t *testing.T, nodes []*agentNode, id string) *agentNode {
	t.Helper()
	for _, n := range nodes {
		if b, err := os.ReadFile(filepath.Join(n.data, "node-id")); err == nil && strings.TrimSpace(string(b)) == id {
			return n
		}
	}
	t.Fatalf("no test node has node ID %s", id)
	return nil
}
