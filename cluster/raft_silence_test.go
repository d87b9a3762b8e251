package cluster

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A node whose Raft address the leader cannot reach (its port firewalled,
// here a wrong raft.advertise) joins gossip and looks alive, while no
// leader ever contacts it: it says so in its log, naming its Raft
// address, instead of staying silent while every deploy waits for it.
func TestNodeWarnsWhenNoLeaderReachesItsRaftPort(t *testing.T) {
	prev := raftSilence
	raftSilence = time.Second
	t.Cleanup(func() { raftSilence = prev })

	first := startAgentConfig(t, t.TempDir(), nil)
	var healthyWarned atomic.Int32
	startAgentConfig(t, t.TempDir(), func(c *AgentConfig) {
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
		c.Logger = slog.New(msgCounter{Handler: c.Logger.Handler(), msg: "no Raft leader has contacted this node lately", n: &healthyWarned})
		c.Raft.Logger = c.Logger
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := closed.Addr().String()
	closed.Close()
	var warned atomic.Int32
	startAgentConfig(t, t.TempDir(), func(c *AgentConfig) {
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
		c.Raft.RaftAdvertise = unreachable
		c.Logger = slog.New(msgCounter{Handler: c.Logger.Handler(), msg: "no Raft leader has contacted this node lately", n: &warned})
		c.Raft.Logger = c.Logger
	})
	waitFor(t, 3*healInterval+5*time.Second, "the unreachable node's warning", func() bool { return warned.Load() > 0 })
	if n := healthyWarned.Load(); n != 0 {
		t.Errorf("a follower the leader reaches warned %d times", n)
	}
	if n := warned.Load(); n > 1 {
		t.Errorf("warned %d times within seconds, want once per %v", n, raftSilenceRepeat)
	}
}
