package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// cluster.leave_on_shutdown through the binary's stop path: a follower
// with it set that stops gracefully is removed from the Raft
// configuration and shows as left on the two others, which keep a
// quorum of two voters. The contrast: the next node to stop, without the
// setting, stays a voter in the configuration and shows as dead, not
// left, so the last node alone is one vote of two and elects no leader.
func TestClusterLeaveOnShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes and waits for gossip to declare one dead (about 7 s); make test runs it")
	}
	dir := t.TempDir()
	first := startAgentNode(t, filepath.Join(dir, "n1"), "")
	join := []string{"--join", first.peer, "--join-token", first.joinToken}
	stayer := startAgentNode(t, filepath.Join(dir, "n2"), "", join...)
	leaver := startAgentNode(t, filepath.Join(dir, "n3"), "leave_on_shutdown = true\n", join...)
	waitMembers(t, first, func(roles map[string]int) bool { return roles["leader"] == 1 && roles["voter"] == 2 })
	leaverID, stayerID := nodeIDOf(t, leaver), nodeIDOf(t, stayer)
	if m := memberOn(t, first, leaverID); m.Role != "voter" {
		// The first node bootstrapped and leads; Store.Leave would hand
		// leadership over first, which is not what this test is about.
		t.Fatalf("the node set to leave is a %s, not a follower", m.Role)
	}

	// The leaver stops the way SIGTERM stops it (its run context ends).
	leaver.stop()
	for _, n := range []*agentNode{first, stayer} {
		waitMember(t, n, leaverID, "left with no Raft role", func(m cluster.MemberInfo) bool {
			return m.Status == "left" && m.Role == "none"
		})
		if st := statusOf(t, n); st.Voters != 2 {
			t.Fatalf("%s counts %d voters after a node left; want 2", st.NodeID, st.Voters)
		}
	}
	// Two voters of two: the cluster still elects and commits.
	waitMembers(t, first, func(roles map[string]int) bool { return roles["leader"] == 1 && roles["voter"] == 1 })

	// The contrast: a node without leave_on_shutdown stops the same way.
	stayer.stop()
	waitMember(t, first, stayerID, "dead and still a voter", func(m cluster.MemberInfo) bool {
		return m.Status == "dead" && m.Role == "voter"
	})
	st := statusOf(t, first)
	if st.Voters != 2 {
		t.Fatalf("the last node counts %d voters; the node that stopped without leaving should still count (want 2)", st.Voters)
	}
	// Gossip declares a node dead seconds after it stops, past the
	// autopilot's dead_server_timeout (2 s), yet it is still a voter: one
	// vote of two is no quorum, so no leader exists to remove it.
	if st.RaftState == "Leader" || st.Leader != "" {
		t.Fatalf("the last node is %s with leader %q; one voter of two must not lead", st.RaftState, st.Leader)
	}
	if m := memberOn(t, first, leaverID); m.Status != "left" || m.Role != "none" {
		t.Fatalf("the node that left is now %s with role %s", m.Status, m.Role)
	}
}

// nodeIDOf returns the node ID n's data directory holds.
func nodeIDOf(t *testing.T, n *agentNode) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.data, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// memberOn returns member id as n's `members --json` lists it.
func memberOn(t *testing.T, n *agentNode, id string) cluster.MemberInfo {
	t.Helper()
	var list []cluster.MemberInfo
	if err := json.Unmarshal([]byte(n.cli(0, "members", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.Name == id {
			return m
		}
	}
	t.Fatalf("%s is not among the members: %+v", id, list)
	return cluster.MemberInfo{}
}

// waitMember polls n's `members --json` until member id satisfies ok.
func waitMember(t *testing.T, n *agentNode, id, what string, ok func(cluster.MemberInfo) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := memberOn(t, n, id)
		if ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %s is not %s: %+v", id, what, m)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// statusOf returns n's `status --json`.
func statusOf(t *testing.T, n *agentNode) cluster.Status {
	t.Helper()
	var st cluster.Status
	if err := json.Unmarshal([]byte(n.cli(0, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}
