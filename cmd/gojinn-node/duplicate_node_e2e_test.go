package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// A copy of a member's data directory started while the member runs
// stops with exit code 1 and an error naming the cause and the fix,
// instead of running as a silent follower; the member stays alive.
func TestCopiedDataDirectoryNodeExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes and restarts one (about 10 s); make test runs it")
	}
	dir := t.TempDir()
	first := startAgentNode(t, filepath.Join(dir, "n1"), "")
	member := startAgentNode(t, filepath.Join(dir, "n2"), "", "--join", first.peer, "--join-token", first.joinToken)
	waitMembers(t, first, func(roles map[string]int) bool { return roles["leader"] == 1 && roles["voter"] == 1 })
	id := nodeIDOf(t, member)

	// Copy the stopped member's data directory, then start the member
	// again (it rejoins by itself, on new ports), then the copy.
	oldAddr := memberOn(t, first, id).Addr
	member.stop()
	// Waiting until gossip calls it dead once kept this test clear of
	// hashicorp/raft#681 (the leader rewrote a replication's peer in
	// place when the member came back at a new address); Node.AddServer
	// now removes and re-adds a moved server, and the wait stays as the
	// ordinary way a member comes back.
	waitMember(t, first, id, "seen dead", func(m cluster.MemberInfo) bool { return m.Status != "alive" })
	copyDir := filepath.Join(dir, "copy")
	copyDataTree(t, member.data, filepath.Join(copyDir, "data"))
	startAgentNode(t, filepath.Join(dir, "n2"), "") // the member again: it rejoins by itself
	waitMember(t, first, id, "alive at its new address", func(m cluster.MemberInfo) bool {
		return m.Status == "alive" && (m.Role == "voter" || m.Role == "leader") && m.Addr != oldAddr
	})

	conf := writeAgentConfig(t, copyDir, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Locked: memberlist may finish a gossip round, and log it, after
	// its Shutdown returned, as on a real stderr.
	var out bytes.Buffer
	errb := &lockedBuffer{}
	code := runEnv(ctx, []string{"agent", "--config", conf}, &out, errb, func(string) string { return "" })
	if ctx.Err() != nil {
		t.Fatalf("the copy kept running for 60 s\nstderr: %s", errb.String())
	}
	log := errb.String()
	// Found in the first join round, the clash fails the start; found a
	// gossip round later, it stops the running node.
	stopped := strings.Contains(log, "node failed to start") || strings.Contains(log, "cannot stay in the cluster")
	if code != 1 || !stopped || !strings.Contains(log, id) ||
		!strings.Contains(log, "copy") || !strings.Contains(log, "empty data directory") {
		t.Fatalf("the copy exited %d; want 1 with the cause and the fix\nstderr: %s", code, log)
	}

	if m := memberOn(t, first, id); m.Status != "alive" || m.Role != "voter" && m.Role != "leader" {
		t.Fatalf("the member is %s/%s after the copy stopped", m.Status, m.Role)
	}
}

// copyDataTree copies the directory src into dst, keeping file modes.
func copyDataTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A new node whose node_name a live member has fails to start: exit 1
// naming the name, no ready banner, and no entry in the cluster's Raft
// configuration left behind.
func TestNodeNameInUseFailsToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes (about 5 s); make test runs it")
	}
	dir := t.TempDir()
	first := startAgentNode(t, filepath.Join(dir, "one", "same"), "")
	conf := writeAgentConfig(t, filepath.Join(dir, "two", "same"), "") // node_name "same" as well
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	errb := &lockedBuffer{}
	code := runEnv(ctx, []string{"agent", "--config", conf, "--join", first.peer, "--join-token", first.joinToken}, &out, errb, func(string) string { return "" })
	if ctx.Err() != nil {
		t.Fatalf("the node with a name in use kept running for 60 s\nstderr: %s", errb.String())
	}
	if code != 1 || !strings.Contains(errb.String(), "node failed to start") || !strings.Contains(errb.String(), `"same"`) {
		t.Fatalf("exit %d; want 1 failing the start with the name\nstderr: %s", code, errb.String())
	}
	if strings.Contains(out.String(), " ready") {
		t.Fatalf("printed its ready banner before it stopped:\n%s", out.String())
	}
	// The member list never shows the newcomer as a Raft server.
	time.Sleep(time.Second)
	var list []cluster.MemberInfo
	if err := json.Unmarshal([]byte(first.cli(0, "members", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.Name != nodeIDOf(t, first) && m.Role != "none" {
			t.Fatalf("the refused node is in Raft as %s: %+v", m.Role, list)
		}
	}
}
