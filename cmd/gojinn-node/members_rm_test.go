package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// startTestAgent starts a cluster agent over dir on loopback ports with
// the local profile, one voter at most and no autopilot removals (only a
// force-leave removes a server), and closes it when the test ends. The
// returned function closes it earlier, once.
func startTestAgent(t *testing.T, dir string, join []string, token string) (*cluster.Agent, func()) {
	t.Helper()
	rc := cluster.FastConfig()
	rc.DataDir = dir
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := cluster.StartAgent(ctx, cluster.AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
		Join: join, JoinToken: token, Version: "test", Logger: log,
		Autopilot: cluster.AutopilotConfig{MaxVoters: 1, DeadServerTimeout: time.Hour, Interval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(a.Close) }
	t.Cleanup(stop)
	return a, stop
}

// `gojinn-node members rm NAME` against a node's admin API: a live member
// and an unknown name are refused with the node's reason (exit 1); a dead
// member is removed from Raft and the list, reported as JSON with --json
// and no longer in `members`; a missing NAME is a usage error (exit 2).
func TestCLIMembersRemove(t *testing.T) {
	dir := t.TempDir()
	first, _ := startTestAgent(t, filepath.Join(dir, "n1"), nil, "")
	second, stopSecond := startTestAgent(t, filepath.Join(dir, "n2"), []string{first.PeerAddr()}, first.JoinTokenCreated)
	firstID, secondID := first.Store().Node().ID(), second.Store().Node().ID()

	const token = "members-rm-test-token"
	h, err := cluster.NewAPI(cluster.APIConfig{
		Registry: first.Store(), Blobs: first.Store().Blobs(), TokenHash: sha256.Sum256([]byte(token)),
		Members: first.MemberInfos, ForceLeave: first.ForceLeave,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	cli := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := runEnv(context.Background(), append(args, "--addr", srv.URL, "--token", token), &out, &errb, func(string) string { return "" })
		if code != wantCode {
			t.Fatalf("gojinn-node %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	members := func() []cluster.MemberInfo {
		out, _ := cli(0, "members", "--json")
		var list []cluster.MemberInfo
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("members --json: %v\n%s", err, out)
		}
		return list
	}
	statusOf := func(id string) string {
		for _, m := range members() {
			if m.Name == id {
				return m.Role + "/" + m.Status
			}
		}
		return ""
	}
	deadline := time.Now().Add(30 * time.Second)
	for statusOf(secondID) != "non-voter/alive" {
		if time.Now().After(deadline) {
			t.Fatalf("the second node is not an alive non-voter: %+v", members())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}

	if _, stderr := cli(2, "members", "rm"); !strings.Contains(stderr, "usage: gojinn-node members rm NAME") {
		t.Errorf("members rm without NAME: %s", stderr)
	}
	if _, stderr := cli(1, "members", "rm", firstID); !strings.Contains(stderr, "is alive") || !strings.Contains(stderr, "leave_on_shutdown") {
		t.Errorf("members rm of a live node: %s", stderr)
	}
	if _, stderr := cli(1, "members", "rm", "no-such-node"); !strings.Contains(stderr, `no member named "no-such-node"`) {
		t.Errorf("members rm of an unknown name: %s", stderr)
	}

	stopSecond() // killed: no leave
	for statusOf(secondID) != "non-voter/dead" {
		if time.Now().After(deadline.Add(15 * time.Second)) {
			t.Fatalf("the second node is not a dead non-voter: %+v", members())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	out, _ := cli(0, "members", "rm", secondID, "--json")
	var res cluster.ForceLeaveResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("members rm --json: %v\n%s", err, out)
	}
	if res != (cluster.ForceLeaveResult{Name: secondID, Status: "dead", RaftRole: "non-voter", RemovedFromRaft: true}) {
		t.Fatalf("members rm --json = %+v", res)
	}
	if table, _ := cli(0, "members"); strings.Contains(table, secondID) || !strings.Contains(table, firstID) {
		t.Fatalf("members after the removal:\n%s", table)
	}
	servers, err := first.Store().Node().Servers()
	if err != nil || len(servers) != 1 || servers[0].ID != firstID {
		t.Fatalf("Raft configuration after the removal: %+v, %v", servers, err)
	}
	if _, stderr := cli(1, "members", "rm", secondID); !strings.Contains(stderr, "no member named") {
		t.Errorf("a second members rm: %s", stderr)
	}
}
