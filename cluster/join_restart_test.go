package cluster

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// restartable is an agent over one data directory, started and closed
// again by a test; the test's end closes the last start.
type restartable struct {
	t    *testing.T
	dir  string
	edit func(*AgentConfig)

	*Agent
	closeOnce *sync.Once
}

func newRestartable(t *testing.T, edit func(*AgentConfig)) *restartable {
	return &restartable{t: t, dir: t.TempDir(), edit: edit}
}

// start starts the agent over its data directory, with more edits for
// this start only.
func (r *restartable) start(edits ...func(*AgentConfig)) error {
	r.t.Helper()
	cfg := agentConfigFor(r.t, r.dir)
	for _, edit := range append([]func(*AgentConfig){r.edit}, edits...) {
		if edit != nil {
			edit(&cfg)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, cfg)
	if err != nil {
		return err
	}
	r.Agent, r.closeOnce = a, &sync.Once{}
	once := r.closeOnce
	r.t.Cleanup(func() { once.Do(a.Close) })
	return nil
}

func (r *restartable) mustStart(edits ...func(*AgentConfig)) {
	r.t.Helper()
	if err := r.start(edits...); err != nil {
		r.t.Fatal(err)
	}
}

func (r *restartable) close() { r.closeOnce.Do(r.Close) }

// nodeID is the ID in the data directory, also while the agent is down.
func (r *restartable) nodeID() string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "node-id"))
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkNotAlone fails the test when the agent leads, or has, a Raft
// cluster whose only voter is itself: a node that enrolled diverges the
// moment it does.
func checkNotAlone(t *testing.T, who string, a *Agent) {
	t.Helper()
	n := a.Store().Node()
	if n.soleVoter() {
		t.Errorf("%s bootstrapped a Raft cluster of its own (leader: %v, configuration: %v)", who, n.IsLeader(), servers(t, a))
	}
}

func servers(t *testing.T, a *Agent) []ServerInfo {
	t.Helper()
	s, err := a.Store().Node().Servers()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func voterIDs(t *testing.T, a *Agent) []string {
	t.Helper()
	var ids []string
	for _, s := range servers(t, a) {
		if s.Voter {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// kvDump is the namespace's keys and values as a node holds them.
func kvDump(t *testing.T, a *Agent, ns string) map[string]string {
	t.Helper()
	page, err := a.Store().KVList(context.Background(), ns, storage.KVListOptions{}, ConsistencyLocal)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range page.Entries {
		out[e.Key] = string(e.Value)
	}
	return out
}

// A node that enrolled and stopped before the leader added it to Raft
// (here: its gossip port was taken, so its start failed after
// enrollment) must not bootstrap a cluster of its own when it starts
// again with its certificate: it waits to be added, takes no write as a
// one-node leader, and ends up with the real cluster's state.
func TestAgentEnrolledNodeRestartedBeforeAddedJoinsTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := newRestartable(t, nil)
	first.mustStart()
	if _, err := first.Store().KVPut(ctx, "app", "real", []byte("from the cluster"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	joiner := newRestartable(t, func(c *AgentConfig) {
		c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
	})
	err = joiner.start(func(c *AgentConfig) { c.GossipBind = busy.Addr().String() })
	if err == nil {
		t.Fatal("the joiner started with its gossip port taken")
	}
	if _, err := LoadNodeIdentity(ClusterDir(joiner.dir)); err != nil {
		t.Fatalf("the failed start should have enrolled the joiner: %v", err)
	}
	id := joiner.nodeID()
	if slices.ContainsFunc(servers(t, first.Agent), func(s ServerInfo) bool { return s.ID == id }) {
		t.Fatal("the leader added the joiner although its start failed")
	}

	// The restart: certificate, no Raft state.
	joiner.mustStart()
	checkNotAlone(t, "the restarted joiner", joiner.Agent)

	// A write through the joiner lands in the real cluster, or nowhere.
	var written bool
	waitFor(t, 30*time.Second, "a write through the joiner", func() bool {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := joiner.Store().KVPut(wctx, "app", "via-joiner", []byte("forwarded"), KVWriteOptions{})
		written = err == nil
		return written || ctx.Err() != nil
	})
	if e, err := first.Store().KVGet(ctx, "app", "via-joiner", ConsistencyLinearizable); err != nil || string(e.Value) != "forwarded" {
		t.Errorf("a write the joiner acknowledged is not in the real cluster: %+v, %v", e, err)
	}
	checkNotAlone(t, "the restarted joiner", joiner.Agent)

	want := []string{first.Store().Node().ID(), id}
	slices.Sort(want)
	waitFor(t, 30*time.Second, "the joiner to be a voter of the real cluster", func() bool {
		return slices.Equal(voterIDs(t, first.Agent), want)
	})
	if _, err := first.Store().KVPut(ctx, "app", "last", []byte("written last"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the joiner to apply the real cluster's log", func() bool {
		_, err := joiner.Store().KVGet(ctx, "app", "last", ConsistencyLocal)
		return err == nil
	})
	// The leader may apply more (KV expiry): compare once both are idle.
	same := func() bool {
		return maps.Equal(kvDump(t, joiner.Agent, "app"), kvDump(t, first.Agent, "app")) &&
			joiner.Store().State().Applied() == first.Store().State().Applied()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !same() {
		if time.Now().After(deadline) {
			t.Fatalf("the joiner's state differs from the cluster's:\njoiner:  %v (applied %d)\ncluster: %v (applied %d)",
				kvDump(t, joiner.Agent, "app"), joiner.Store().State().Applied(), kvDump(t, first.Agent, "app"), first.Store().State().Applied())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// With bootstrap_expect 3, neither the bootstrap node nor a joiner it is
// waiting for starts a cluster alone when restarted during the wait; the
// cluster forms with all three once the third server asks.
func TestAgentBootstrapExpectSurvivesRestartsDuringTheWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := newRestartable(t, func(c *AgentConfig) { c.BootstrapExpect = 3 })
	first.mustStart()
	token := first.JoinTokenCreated
	// The token was shown: a restart does not show it again, which is
	// what the node used to tell a new cluster by.
	if err := MarkSecretsShown(first.dir); err != nil {
		t.Fatal(err)
	}
	joinFirst := func(c *AgentConfig) { c.Join, c.JoinToken = []string{first.PeerAddr()}, token }

	second := newRestartable(t, joinFirst)
	second.mustStart()
	waitFor(t, 10*time.Second, "the second server's join to be seen", func() bool {
		first.expectMu.Lock()
		defer first.expectMu.Unlock()
		return len(first.pending) == 1
	})
	second.close()
	second.mustStart()
	checkNotAlone(t, "the restarted second server", second.Agent)

	// The bootstrap node restarts on the same peer address, which the
	// second server keeps asking.
	peerAddr := first.PeerAddr()
	first.close()
	first.mustStart(func(c *AgentConfig) { c.PeerListen = peerAddr })
	checkNotAlone(t, "the restarted bootstrap node", first.Agent)
	if first.JoinTokenCreated != "" {
		t.Error("the restart showed the join token again")
	}
	if addr, _ := first.Store().Node().Leader(); addr != "" {
		t.Fatalf("a leader (%s) before the expected servers arrived", addr)
	}

	third := newRestartable(t, joinFirst)
	third.mustStart()
	want := []string{first.Store().Node().ID(), second.Store().Node().ID(), third.Store().Node().ID()}
	slices.Sort(want)
	all := []*Agent{first.Agent, second.Agent, third.Agent}
	waitFor(t, 30*time.Second, "one cluster of the three servers, all voters", func() bool {
		for _, a := range all {
			if addr, _ := a.Store().Node().Leader(); addr == "" || !slices.Equal(voterIDs(t, a), want) {
				return false
			}
		}
		return true
	})
	var leader *Agent
	for _, a := range all {
		if a.Store().Node().IsLeader() {
			leader = a
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	if _, err := leader.Store().KVPut(ctx, "app", "k", []byte("v"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the write on every server", func() bool {
		for _, a := range all {
			if _, err := a.Store().KVGet(ctx, "app", "k", ConsistencyLocal); err != nil {
				return false
			}
		}
		return true
	})
}

// Only the data directory that created the cluster may bootstrap: not a
// new one, not one that enrolled (also once given a copy of the CA), and
// a directory marked enrolled that lost its certificate refuses to start
// a new cluster rather than make one.
func TestMayBootstrap(t *testing.T) {
	boot := ClusterDir(t.TempDir())
	if ok, err := mayBootstrap(boot); ok || err != nil {
		t.Fatalf("an empty directory: %v, %v", ok, err)
	}
	if _, _, err := BootstrapIdentity(boot, "boot-1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := mayBootstrap(boot); !ok || err != nil {
		t.Fatalf("the bootstrap node's directory: %v, %v", ok, err)
	}
	if err := markEnrolled(boot, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := mayBootstrap(boot); ok || err != nil {
		t.Fatalf("an enrolled node holding a copy of the CA: %v, %v", ok, err)
	}

	dir := t.TempDir()
	if err := os.MkdirAll(ClusterDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := markEnrolled(ClusterDir(dir), "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	cfg := agentConfigFor(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, cfg)
	if err == nil {
		a.Close()
		t.Fatal("a node that enrolled and lost its certificate bootstrapped a new cluster")
	}
	if !errors.Is(err, errEnrolledNoIdentity) {
		t.Fatalf("got %v, want errEnrolledNoIdentity", err)
	}
	if _, err := os.Stat(filepath.Join(ClusterDir(dir), ClusterCADirName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused start created a CA: %v", err)
	}
}
