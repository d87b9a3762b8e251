package cluster

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// grepLogs makes c's logger count the messages containing sub.
func grepLogs(c *AgentConfig, sub string) *atomic.Int32 {
	n := &atomic.Int32{}
	c.Logger = slog.New(msgCounter{c.Logger.Handler(), sub, n})
	c.Raft.Logger = c.Logger
	return n
}

// failedWithin waits for a's Failed error.
func failedWithin(t *testing.T, a *Agent, d time.Duration) error {
	t.Helper()
	select {
	case err := <-a.Failed():
		return err
	case <-time.After(d):
		t.Fatalf("the agent did not stop within %v", d)
		return nil
	}
}

// notFailed checks a is still running.
func notFailed(t *testing.T, who string, a *Agent) {
	t.Helper()
	select {
	case err := <-a.Failed():
		t.Fatalf("%s stopped: %v", who, err)
	default:
	}
}

// A node joining with the node_name of a live member stops with an error
// that says so and what to do, before Raft adds it; the member it clashed
// with (the seed) logs why and stays. A node with another name joins.
func TestJoinWithDuplicateNodeNameFails(t *testing.T) {
	var seedSaw *atomic.Int32
	first := newRestartable(t, func(c *AgentConfig) {
		c.NodeName = "edge-1"
		seedSaw = grepLogs(c, "another node claims this node's node name")
	})
	first.mustStart()
	join := func(name string) func(*AgentConfig) {
		return func(c *AgentConfig) {
			c.NodeName = name
			c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
		}
	}
	dup := newRestartable(t, nil)
	dup.mustStart(join("edge-1"))
	err := failedWithin(t, dup.Agent, 30*time.Second)
	if !errors.Is(err, ErrDuplicateNodeName) || !strings.Contains(err.Error(), `node_name "edge-1"`) ||
		!strings.Contains(err.Error(), first.nodeID()) || !strings.Contains(err.Error(), "another node_name") {
		t.Fatalf("the duplicate stopped with %v; want ErrDuplicateNodeName naming the name, the member and the fix", err)
	}
	if inConfigIDs(t, first.Agent, dup.nodeID()) {
		t.Fatal("Raft added the node whose name is taken")
	}
	// The seed merges the newcomer's state after answering its push/pull,
	// so it may log the clash after the newcomer has stopped.
	waitFor(t, 10*time.Second, "the seed to log the clash", func() bool { return seedSaw.Load() > 0 })
	notFailed(t, "the seed", first.Agent)

	other := newRestartable(t, nil)
	other.mustStart(join("edge-2"))
	waitFor(t, 30*time.Second, "the node with its own name in Raft", func() bool { return inConfigIDs(t, first.Agent, other.nodeID()) })
	notFailed(t, "the node with its own name", other.Agent)
	if m, ok := memberNamed(first.Members(), other.nodeID()); !ok || m.Meta.Name != "edge-2" {
		t.Fatalf("the seed lists the new node as %+v (%v), want node name edge-2", m, ok)
	}
}

// A copy of a member's data directory (same node ID, same certificate)
// started while that member runs stops with an error naming the cause and
// the fix, instead of running as a silent follower; Raft keeps the
// member's address, the seed logs the clash, and the member (restarted on
// new addresses before the copy starts, which must not look like a clash)
// keeps working.
func TestCopiedDataDirectoryStops(t *testing.T) {
	var seedSaw *atomic.Int32
	first := newRestartable(t, func(c *AgentConfig) { seedSaw = grepLogs(c, "claims the node ID of a member") })
	first.mustStart()
	member := newRestartable(t, nil)
	member.mustStart(func(c *AgentConfig) { c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated })
	id := member.nodeID()
	waitFor(t, 30*time.Second, "2 voters", func() bool { return len(voterIDs(t, first.Agent)) == 2 })

	// A copy of the stopped member's data directory, then the member back
	// on new ports (127.0.0.1:0).
	member.close()
	copied := t.TempDir()
	copyTree(t, member.dir, copied)
	member.mustStart()
	waitFor(t, 30*time.Second, "the member back at its new addresses", func() bool {
		m, ok := memberNamed(first.Members(), id)
		for _, s := range servers(t, first.Agent) {
			if s.ID == id {
				return ok && m.Status == StatusAlive && m.Addr == member.members.LocalAddr() && s.Addr == member.Store().Node().Addr()
			}
		}
		return false
	})
	notFailed(t, "the restarted member", member.Agent)

	cp := &restartable{t: t, dir: copied}
	cp.mustStart()
	err := failedWithin(t, cp.Agent, 30*time.Second)
	if !errors.Is(err, ErrDuplicateNodeID) || !strings.Contains(err.Error(), "copy") ||
		!strings.Contains(err.Error(), "empty data directory") || !strings.Contains(err.Error(), id) {
		t.Fatalf("the copy stopped with %v; want ErrDuplicateNodeID naming the ID, the cause and the fix", err)
	}
	for _, s := range servers(t, first.Agent) {
		if s.ID == id && s.Addr != member.Store().Node().Addr() {
			t.Fatalf("Raft moved the member to %s (the copy's address); the member is at %s", s.Addr, member.Store().Node().Addr())
		}
	}
	if m, _ := memberNamed(first.Members(), id); m.Status != StatusAlive || m.Addr != member.members.LocalAddr() {
		t.Fatalf("the seed sees the member as %+v", m)
	}
	waitFor(t, 10*time.Second, "the seed to log the clash", func() bool { return seedSaw.Load() > 0 })
	notFailed(t, "the member", member.Agent)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := member.Store().KVPut(ctx, "dup", "k", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatalf("a write through the member after the copy stopped: %v", err)
	}
}

// copyTree copies the directory src into dst, keeping file modes.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A server whose Raft address is not the one its live gossip member
// announces (a copy of its data directory asked to be added from its own
// address before it found the clash and stopped) is pointed back at the
// member's address by the leader, and keeps voting.
func TestLeaderRepairsADisplacedRaftAddress(t *testing.T) {
	first := startAgentConfig(t, t.TempDir(), noAutopilotRemoval)
	join := func(c *AgentConfig) {
		noAutopilotRemoval(c)
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
	}
	second := startAgentConfig(t, t.TempDir(), join)
	third := startAgentConfig(t, t.TempDir(), join)
	waitFor(t, 30*time.Second, "3 voters", func() bool { return len(voterIDs(t, first)) == 3 })
	leader := leaderAgent(t, []*Agent{first, second, third})
	victim := second
	if victim == leader {
		victim = third
	}
	id, addr := victim.Store().Node().ID(), victim.Store().Node().Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// What the copy's join did: the member's entry now names an address
	// where nothing runs.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bogus := gone.Addr().String()
	gone.Close()
	if err := leader.Store().Node().AddServer(ctx, id, bogus, true); err != nil {
		t.Fatal(err)
	}
	// Repaired as a non-voter (the leader forgets what the other
	// address acknowledged), then promoted by the autopilot.
	waitFor(t, 3*healInterval, "the member's Raft address repaired", func() bool {
		for _, s := range servers(t, leader) {
			if s.ID == id {
				return s.Addr == addr
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "the repaired member a voter again", func() bool {
		for _, s := range servers(t, leader) {
			if s.ID == id {
				return s.Addr == addr && s.Voter
			}
		}
		return false
	})
	if _, err := leader.Store().KVPut(ctx, "repair", "k", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatalf("a write after the repair: %v", err)
	}
}

// A node name derived from the host name (NodeNameFromHost) is shown but
// never checked: distinct machines share host names (cloned images,
// several nodes on one host), and neither node stops.
func TestHostDerivedNodeNamesMayRepeat(t *testing.T) {
	host := func(c *AgentConfig) { c.NodeName, c.NodeNameFromHost = "debian", true }
	first := newRestartable(t, host)
	first.mustStart()
	second := newRestartable(t, nil)
	second.mustStart(func(c *AgentConfig) {
		host(c)
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
	})
	waitFor(t, 30*time.Second, "the second node in Raft", func() bool { return inConfigIDs(t, first.Agent, second.nodeID()) })
	waitFor(t, 10*time.Second, "the seed listing the second node by name", func() bool {
		m, ok := memberNamed(first.Members(), second.nodeID())
		return ok && m.Meta.Name == "debian"
	})
	time.Sleep(2 * time.Second) // a clash check would have stopped one by now (3 s probes, well under this plus the waits above)
	notFailed(t, "the seed", first.Agent)
	notFailed(t, "the second node", second.Agent)
}
