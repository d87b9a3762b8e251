package cluster

import (
	"sync/atomic"
	"testing"
	"time"
)

// mustKeygen returns a new gossip key.
func mustKeygen(t *testing.T) string {
	t.Helper()
	k, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A joiner whose gossip cannot reach the cluster (here: another gossip
// key) is not added to Raft: no member would see it by gossip, and its
// identity was never checked. It says why, and joins once gossip works.
func TestJoinWaitsForGossip(t *testing.T) {
	first := newRestartable(t, func(c *AgentConfig) {
		c.GossipKey = mustKeygen(t)
	})
	first.mustStart()
	var warned *atomic.Int32
	joiner := newRestartable(t, nil)
	joiner.mustStart(func(c *AgentConfig) {
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
		c.GossipKey = mustKeygen(t) // not the cluster's
		warned = grepLogs(c, "gossip could not reach them")
	})
	waitFor(t, 20*time.Second, "the joiner to warn about gossip", func() bool { return warned.Load() > 0 })
	time.Sleep(2 * time.Second) // a few join rounds
	if inConfigIDs(t, first.Agent, joiner.nodeID()) {
		t.Fatal("Raft added a joiner whose gossip never reached the cluster")
	}
}
