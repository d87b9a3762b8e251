package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// keyedAgentOpts configures startKeyedAgent.
type keyedAgentOpts struct {
	join       []string
	token      string
	gossipKey  string   // AgentConfig.GossipKey (cluster.gossip_key)
	gossipKeys []string // AgentConfig.GossipKeys (cluster.gossip_keys)
	// deadServer is the autopilot's DeadServerTimeout; default 30 s, so
	// a node restarted by a test keeps its place in Raft.
	deadServer time.Duration
}

// keyedAgent is an agent a test can stop and start again on its data
// directory; stop may be called more than once.
type keyedAgent struct {
	*Agent
	dir  string
	once sync.Once
}

func (k *keyedAgent) stop() { k.once.Do(k.Close) }

func startKeyedAgent(t *testing.T, dir string, o keyedAgentOpts) *keyedAgent {
	t.Helper()
	if o.deadServer == 0 {
		o.deadServer = 30 * time.Second
	}
	rc := testConfig(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
		Join: o.join, JoinToken: o.token, Version: "test", GossipKey: o.gossipKey, GossipKeys: o.gossipKeys,
		Autopilot: AutopilotConfig{DeadServerTimeout: o.deadServer, Interval: 100 * time.Millisecond},
		Logger:    rc.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	k := &keyedAgent{Agent: a, dir: dir}
	t.Cleanup(k.stop)
	return k
}

// oneGossipCluster reports nil when every agent sees exactly the given
// agents, all alive, and no other member alive: one gossip cluster, no
// split.
func oneGossipCluster(agents ...*keyedAgent) error {
	want := make([]string, len(agents))
	for i, a := range agents {
		want[i] = a.Store().Node().ID()
	}
	slices.Sort(want)
	for _, a := range agents {
		var alive []string
		for _, m := range a.Members() {
			if m.Status == StatusAlive {
				alive = append(alive, m.Name)
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, want) {
			return fmt.Errorf("%s sees alive %v, want %v", a.Store().Node().ID(), alive, want)
		}
	}
	return nil
}

// inRaftAt reports whether a's Raft configuration lists b at b's current
// Raft address, and a knows a leader.
func inRaftAt(a, b *keyedAgent) bool {
	if addr, _ := a.Store().Node().Leader(); addr == "" {
		return false
	}
	servers, err := a.Store().Node().Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s.ID == b.Store().Node().ID() {
			return s.Addr == b.Store().Node().Addr()
		}
	}
	return false
}

// The documented rotation, on three agents configured as an operator
// would: every node starts with cluster.gossip_key = old; then three
// rounds of rolling restarts, one node at a time, with the keyrings
// [old, new] (gossip_key = old, gossip_keys = [new]), [new, old] and
// [new]. After every single restart the three nodes are alive members of
// one gossip cluster, as each of them sees it, and each node's primary key
// is installed on every other node, so no two running nodes ever stop
// reading each other. Midway through the second round (keyrings differ
// between nodes), a node enrolls with only the join token: it is handed
// the seed's whole keyring and becomes an alive member of the same
// cluster, which the primary key alone would not allow. At the end the
// retired key cannot join.
func TestAgentGossipKeyRotationRollingRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("10 agent restarts (about a minute with -race); make test runs it")
	}
	oldKey, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	oldRaw, _ := ParseGossipKey(oldKey)
	newRaw, _ := ParseGossipKey(newKey)
	fp := func(ring ...[]byte) []string { return keyringFingerprints(ring) }

	nodes := make([]*keyedAgent, 3)
	nodes[0] = startKeyedAgent(t, t.TempDir(), keyedAgentOpts{gossipKey: oldKey})
	token := nodes[0].JoinTokenCreated
	for i := 1; i < 3; i++ {
		nodes[i] = startKeyedAgent(t, t.TempDir(), keyedAgentOpts{join: []string{nodes[0].PeerAddr()}, token: token, gossipKey: oldKey})
	}
	waitOne := func(what string) {
		t.Helper()
		pollGossip(t, 30*time.Second, what+": one gossip cluster of 3 alive members", func() error {
			return oneGossipCluster(nodes...)
		})
		for _, a := range nodes {
			for _, b := range nodes {
				if primary := a.members.KeyFingerprints()[0]; !slices.Contains(b.members.KeyFingerprints(), primary) {
					t.Fatalf("%s: %s encrypts with %s, which %s cannot read (keyring %v)",
						what, a.Store().Node().ID(), primary, b.Store().Node().ID(), b.members.KeyFingerprints())
				}
			}
		}
	}
	waitOne("start")
	for _, a := range nodes {
		if got := a.members.KeyFingerprints(); !slices.Equal(got, fp(oldRaw)) {
			t.Fatalf("start: keyring %v, want [old]", got)
		}
	}

	restart := func(i int, o keyedAgentOpts, want []string, step string) {
		t.Helper()
		dir, id := nodes[i].dir, nodes[i].Store().Node().ID()
		nodes[i].stop()
		var others []*keyedAgent
		for j, a := range nodes {
			if j != i {
				others = append(others, a)
				o.join = append(o.join, a.PeerAddr())
			}
		}
		// Restart once the others noticed the node is gone, as a real
		// restart would (see TestAgentsFormACluster for the raft race an
		// instant restart on a new address trips).
		waitFor(t, 30*time.Second, step+": the others to see the stopped node go", func() bool {
			for _, a := range others {
				for _, m := range a.Members() {
					if m.Name == id && m.Status == StatusAlive {
						return false
					}
				}
			}
			return true
		})
		// While it is down, the other two still form one cluster.
		if err := oneGossipCluster(others...); err != nil {
			t.Fatalf("%s, node %d down: %v", step, i, err)
		}
		nodes[i] = startKeyedAgent(t, dir, o)
		if got := nodes[i].members.KeyFingerprints(); !slices.Equal(got, want) {
			t.Fatalf("%s: node %d runs keyring %v, want %v", step, i, got, want)
		}
		waitOne(fmt.Sprintf("%s, node %d restarted", step, i))
		waitFor(t, 30*time.Second, step+": the restarted node in Raft at its new address", func() bool {
			return inRaftAt(others[0], nodes[i])
		})
	}

	// (a) The new key as a secondary everywhere.
	for i := range nodes {
		restart(i, keyedAgentOpts{gossipKey: oldKey, gossipKeys: []string{newKey}}, fp(oldRaw, newRaw), "(a) add the new key")
	}
	// (b) The new key as the primary everywhere.
	restart(0, keyedAgentOpts{gossipKey: newKey, gossipKeys: []string{oldKey}}, fp(newRaw, oldRaw), "(b) use the new key")

	// Midway: node 0 encrypts with new, nodes 1 and 2 with old. A node
	// enrolling at node 0 gets [new, old] and reads both.
	joiner := startKeyedAgent(t, t.TempDir(), keyedAgentOpts{join: []string{nodes[0].PeerAddr()}, token: token})
	if got := joiner.members.KeyFingerprints(); !slices.Equal(got, fp(newRaw, oldRaw)) {
		t.Fatalf("the node enrolled mid-rotation runs keyring %v, want the seed's [new, old]", got)
	}
	stored, err := readGossipKeyring(ClusterDir(joiner.dir))
	if err != nil || !slices.Equal(keyringFingerprints(stored), fp(newRaw, oldRaw)) {
		t.Fatalf("the enrolled node stored keyring %v (%v), want [new, old]", keyringFingerprints(stored), err)
	}
	pollGossip(t, 30*time.Second, "the node enrolled mid-rotation alive on every node", func() error {
		return oneGossipCluster(append(slices.Clone(nodes), joiner)...)
	})
	leaveCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := joiner.Leave(leaveCtx); err != nil {
		t.Fatalf("the enrolled node's leave: %v", err)
	}
	cancel()
	joiner.stop()
	waitOne("(b) after the enrolled node left")

	for i := 1; i < 3; i++ {
		restart(i, keyedAgentOpts{gossipKey: newKey, gossipKeys: []string{oldKey}}, fp(newRaw, oldRaw), "(b) use the new key")
	}
	// (c) The old key removed everywhere.
	for i := range nodes {
		restart(i, keyedAgentOpts{gossipKey: newKey}, fp(newRaw), "(c) remove the old key")
	}

	// Each node's data directory keeps the keyring it last ran with, so a
	// node restarted without keys in its configuration stays in.
	for i, a := range nodes {
		stored, err := readGossipKeyring(ClusterDir(a.dir))
		if err != nil || !slices.Equal(keyringFingerprints(stored), fp(newRaw)) {
			t.Fatalf("node %d stored keyring %v (%v), want [new]", i, keyringFingerprints(stored), err)
		}
	}
	restart(1, keyedAgentOpts{}, fp(newRaw), "keys dropped from the configuration")

	// The retired key no longer joins; the new one does.
	for _, c := range []struct {
		name string
		key  []byte
		join bool
	}{{"retired", oldRaw, false}, {"new", newRaw, true}} {
		cfg := testMembershipConfig(t, "probe-"+c.name)
		cfg.Meta = NodeMeta{} // not a server: the leader must not add it to Raft
		cfg.SecretKey = c.key
		m := startGossipNode(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := m.JoinNow(ctx, []string{nodes[0].members.LocalAddr()})
		cancel()
		if (err == nil) != c.join {
			t.Errorf("a gossip node with the %s key: join error %v", c.name, err)
		}
		_ = m.Shutdown()
	}
}
