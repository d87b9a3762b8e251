package cluster

import (
	"context"
	"testing"
	"time"
)

// When every node comes back on new addresses at once (a Docker network
// recreated on another subnet, VPSes renumbered), Raft's configuration
// still names the old ones and only a leader could change it: the nodes
// stayed candidates for ever, dialling the old addresses. The transport
// now dials the Raft address each member announces over gossip, so once
// gossip has found them again (through cluster.join) they elect a leader,
// keep their data, and the leader records the new addresses.
func TestClusterElectsAfterEveryNodeMoved(t *testing.T) {
	var nodes [3]*restartable
	for i := range nodes {
		nodes[i] = newRestartable(t, noAutopilotRemoval)
	}
	nodes[0].mustStart()
	for _, n := range nodes[1:] {
		n.mustStart(func(c *AgentConfig) { c.Join, c.JoinToken = []string{nodes[0].PeerAddr()}, nodes[0].JoinTokenCreated })
	}
	waitFor(t, 30*time.Second, "3 voters", func() bool { return len(voterIDs(t, nodes[0].Agent)) == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := leaderAgent(t, []*Agent{nodes[0].Agent, nodes[1].Agent, nodes[2].Agent})
	if _, err := leader.Store().KVPut(ctx, "moved", "k", []byte("before"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{}
	for _, s := range servers(t, leader) {
		old[s.ID] = s.Addr
	}
	for _, n := range nodes {
		n.close()
	}
	// Every listener comes back on a new port (127.0.0.1:0), so no
	// address any node recorded is right any more: the first node starts
	// alone and the others join it by its new peer API address.
	nodes[0].mustStart()
	for _, n := range nodes[1:] {
		n.mustStart(func(c *AgentConfig) { c.Join = []string{nodes[0].PeerAddr()} })
	}
	agents := []*Agent{nodes[0].Agent, nodes[1].Agent, nodes[2].Agent}
	for _, a := range agents {
		if id := a.Store().Node().ID(); old[id] == a.Store().Node().Addr() {
			t.Fatalf("node %s restarted on its old Raft address %s; the test needs a new one", id, old[id])
		}
	}
	l := leaderAgentWithin(t, agents, 60*time.Second) // after every node moved
	if e, err := l.Store().KVGet(ctx, "moved", "k", ConsistencyLinearizable); err != nil || string(e.Value) != "before" {
		t.Fatalf("after the move the leader reads %q, %v; want the value written before", e.Value, err)
	}
	if _, err := l.Store().KVPut(ctx, "moved", "k", []byte("after"), KVWriteOptions{}); err != nil {
		t.Fatalf("a write after the move: %v", err)
	}
	waitFor(t, 30*time.Second, "the leader's configuration names the new addresses", func() bool {
		now := map[string]string{}
		for _, s := range servers(t, l) {
			now[s.ID] = s.Addr
		}
		for _, a := range agents {
			if now[a.Store().Node().ID()] != a.Store().Node().Addr() {
				return false
			}
		}
		return true
	})
}
