package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Members that left or died are dropped from Members after their reap
// times: a left one soon (LeftMemberReapTime), a dead one later
// (DeadMemberReapTime). Real memberlist nodes on loopback, one killed
// (Shutdown without Leave), one leaving.
func TestMembersPruneLeftSoonDeadLater(t *testing.T) {
	const left, dead = time.Second, 4 * time.Second
	var nodes []*Membership
	for i := range 3 {
		cfg := testMembershipConfig(t, fmt.Sprintf("pr-%d", i))
		cfg.LeftMemberReapTime, cfg.DeadMemberReapTime = left, dead
		if i > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, startGossipNode(t, cfg))
	}
	pollGossip(t, 5*time.Second, "3 members", expectGossipAlive(nodes, "pr-0", "pr-1", "pr-2"))
	observer := nodes[0]

	// pr-1 leaves: listed as left, then dropped after LeftMemberReapTime.
	if err := nodes[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	pollGossip(t, 5*time.Second, "pr-1 left", expectGossipStatus([]*Membership{observer}, "pr-1", StatusLeft))
	leftAt, _ := gossipMemberOf(observer, "pr-1")
	pollGossip(t, 5*time.Second, "pr-1 dropped", func() error {
		if m, ok := gossipMemberOf(observer, "pr-1"); ok {
			return fmt.Errorf("still listed as %s", m.Status)
		}
		return nil
	})
	if d := time.Since(leftAt.Since); d < left {
		t.Fatalf("pr-1 was dropped %v after it left; the left reap time is %v", d, left)
	}

	// pr-2 is killed (no leave): listed as dead for DeadMemberReapTime,
	// well past the left reap time, then dropped.
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	pollGossip(t, 10*time.Second, "pr-2 dead", expectGossipStatus([]*Membership{observer}, "pr-2", StatusDead))
	deadAt, _ := gossipMemberOf(observer, "pr-2")
	pollGossip(t, dead+5*time.Second, "pr-2 dropped", func() error {
		if m, ok := gossipMemberOf(observer, "pr-2"); ok {
			return fmt.Errorf("still listed as %s", m.Status)
		}
		return nil
	})
	if d := time.Since(deadAt.Since); d < dead {
		t.Fatalf("pr-2 was dropped %v after it died; the dead reap time is %v", d, dead)
	}
	if m, ok := gossipMemberOf(observer, "pr-0"); !ok || m.Status != StatusAlive {
		t.Fatalf("the observer lists itself as %+v (%v)", m, ok)
	}
}

// A member that gossip reports as left but is still in the Raft
// configuration (its own Store.Leave did not run or failed) is removed
// from Raft by the leader, so it does not count as a failed voter. The
// member leaves gossip only; its Raft keeps answering, so nothing else
// (the autopilot) would remove it.
func TestLeaderRemovesLeftMemberFromRaft(t *testing.T) {
	slow := func(c *AgentConfig) { c.Autopilot.DeadServerTimeout = time.Hour }
	first := startAgentConfig(t, t.TempDir(), slow)
	join := func(c *AgentConfig) {
		slow(c)
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
	}
	second := startAgentConfig(t, t.TempDir(), join)
	third := startAgentConfig(t, t.TempDir(), join)
	agents := []*Agent{first, second, third}
	waitFor(t, 30*time.Second, "3 voters", func() bool { return len(voterIDs(t, first)) == 3 })
	leader := leaderAgent(t, agents)
	leaver := second
	if leaver == leader {
		leaver = third
	}
	id := leaver.Store().Node().ID()
	if err := leaver.members.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the leader to see the member as left", func() bool {
		m, ok := memberNamed(leader.Members(), id)
		return ok && m.Status == StatusLeft
	})
	waitFor(t, 3*healInterval, "the leader to remove the left member from Raft", func() bool {
		for _, s := range servers(t, leader) {
			if s.ID == id {
				return false
			}
		}
		return true
	})
	// The two others still commit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := leader.Store().KVPut(ctx, "prune", "k", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatalf("a write after the removal: %v", err)
	}
}

// memberNamed finds name in list.
func memberNamed(list []Member, name string) (Member, bool) {
	for _, m := range list {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}
