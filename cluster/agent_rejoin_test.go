package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// The node that bootstrapped the cluster has no cluster.join. Stopped
// long enough for the autopilot to remove it and restarted on new
// addresses, it rejoins through the members it last saw (DATA/cluster/
// peers) and is a voter at its new Raft address again. Then a node whose
// only seed is that old, dead address restarts on new addresses too and
// still finds the cluster the same way.
func TestAgentRejoinsThroughLastKnownPeers(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	oldSeed := first.PeerAddr()
	second, err := startTestAgent(t, t.TempDir(), []string{oldSeed}, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	third, err := startTestAgent(t, t.TempDir(), []string{oldSeed}, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	waitConfig(t, first, 3, 3)

	// Every node records where the others' peer APIs are.
	waitFor(t, 10*time.Second, "the bootstrap node's peers file to list both others", func() bool {
		seeds := readPeersFile(t, first.dir)
		return slices.Contains(seeds, second.PeerAddr()) && slices.Contains(seeds, third.PeerAddr())
	})
	if fi, err := os.Stat(filepath.Join(ClusterDir(first.dir), peersFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("peers file: %v %v", fi, err)
	}

	// Stop the bootstrap node until the autopilot has removed it.
	firstID, firstDir := first.Store().Node().ID(), first.dir
	first.close()
	waitFor(t, 30*time.Second, "the autopilot to remove the stopped bootstrap node", func() bool {
		return leaderOf(second, third) != nil && !inConfig(leaderOf(second, third), firstID)
	})

	// Restart it on new ports with no join list: it rejoins as a voter at
	// its new Raft address.
	first, err = startTestAgent(t, firstDir, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if first.PeerAddr() == oldSeed {
		t.Fatalf("the restarted node kept its peer address %s; the test needs a new one", oldSeed)
	}
	waitRejoined(t, first, second, third)

	// The cluster works with it: a deploy is servable on all three.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := storage.Spec{Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/t/*"}}}
	spec.SHA256, spec.Size = putBlob(t, second.Store(), wat(t))
	v, err := second.Store().Deploy(ctx, "tiny", spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.WaitServable(ctx, "tiny", v.Version); err != nil {
		t.Fatal(err)
	}
	if st := first.rec.VersionState("tiny", v.Version); st.State != "ready" {
		t.Fatalf("the restarted bootstrap node: %+v", st)
	}

	// A node whose cluster.join names only the bootstrap node's old, dead
	// address restarts on new addresses and rejoins through the peers
	// file, which gossip updated with the bootstrap node's new address.
	mover := second
	if mover.Store().Node().IsLeader() {
		mover = third
	}
	waitFor(t, 10*time.Second, "the peers file to follow the bootstrap node's new address", func() bool {
		return slices.Contains(readPeersFile(t, mover.dir), first.PeerAddr())
	})
	moverID, moverDir := mover.Store().Node().ID(), mover.dir
	others := []*testAgent{first, second, third}
	others = slices.DeleteFunc(others, func(a *testAgent) bool { return a == mover })
	mover.close()
	waitFor(t, 30*time.Second, "the autopilot to remove the stopped node", func() bool {
		l := leaderOf(others...)
		return l != nil && !inConfig(l, moverID)
	})
	mover, err = startTestAgent(t, moverDir, []string{oldSeed}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitRejoined(t, mover, others...)
}

// waitConfig waits until a's Raft configuration has voters voters and
// gossip shows alive members.
func waitConfig(t *testing.T, a *testAgent, voters, alive int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d voters and %d alive members", voters, alive), func() bool {
		servers, err := a.Store().Node().Servers()
		if err != nil {
			return false
		}
		v := 0
		for _, s := range servers {
			if s.Voter {
				v++
			}
		}
		n := 0
		for _, m := range a.Members() {
			if m.Status == StatusAlive {
				n++
			}
		}
		return v == voters && n == alive
	})
}

// waitRejoined waits until the leader among others lists node as a voter
// at its current Raft address and gossip on every other sees it alive.
func waitRejoined(t *testing.T, node *testAgent, others ...*testAgent) {
	t.Helper()
	id, addr := node.Store().Node().ID(), node.Store().Node().Addr()
	waitFor(t, 30*time.Second, "the restarted node back as a voter at its new Raft address", func() bool {
		l := leaderOf(append(others, node)...)
		if l == nil {
			return false
		}
		servers, err := l.Store().Node().Servers()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.ID == id {
				return s.Addr == addr && s.Voter
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "gossip to see the restarted node alive everywhere", func() bool {
		for _, o := range others {
			alive := false
			for _, m := range o.Members() {
				if m.Name == id && m.Status == StatusAlive && m.Meta.APIAddr == node.PeerAddr() {
					alive = true
				}
			}
			if !alive {
				return false
			}
		}
		return true
	})
}

func leaderOf(agents ...*testAgent) *testAgent {
	for _, a := range agents {
		if a.Store().Node().IsLeader() {
			return a
		}
	}
	return nil
}

func inConfig(a *testAgent, id string) bool {
	servers, err := a.Store().Node().Servers()
	if err != nil {
		return true
	}
	for _, s := range servers {
		if s.ID == id {
			return true
		}
	}
	return false
}

// readPeersFile returns the peer API addresses DATA/cluster/peers lists.
func readPeersFile(t *testing.T, dataDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ClusterDir(dataDir), peersFileName))
	if err != nil {
		return nil
	}
	var f peersFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("peers file: %v\n%s", err, b)
	}
	var out []string
	for _, p := range f.Peers {
		out = append(out, p.APIAddr)
	}
	return out
}

// The peers file keeps alive and dead members at their latest address,
// forgets members that left, keeps members gossip no longer shows (a
// restarted node sees only itself), is bounded, is rewritten only when an
// address changed, and survives a reload.
func TestKnownPeersFile(t *testing.T) {
	dir := t.TempDir()
	k, err := loadKnownPeers(dir, "self")
	if err != nil || len(k.seeds("")) != 0 {
		t.Fatalf("empty dir: %v %v", k.seeds(""), err)
	}
	now := time.Unix(1000, 0)
	m := func(name, api string, st MemberStatus) Member {
		return Member{Name: name, Status: st, Meta: NodeMeta{APIAddr: api}}
	}
	changed, err := k.update([]Member{
		m("self", "10.0.0.1:7948", StatusAlive),
		m("a", "10.0.0.2:7948", StatusAlive),
		m("b", "10.0.0.3:7948", StatusDead),
		m("c", "10.0.0.4:7948", StatusLeaving),
	}, now)
	if err != nil || !changed {
		t.Fatalf("first update: %v %v", changed, err)
	}
	if got := k.seeds(""); !slices.Equal(got, []string{"10.0.0.2:7948", "10.0.0.3:7948"}) {
		t.Fatalf("seeds: %v (alive first, no self, no leaving)", got)
	}
	fi, err := os.Stat(filepath.Join(dir, peersFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}

	// Only self known (a fresh restart): nothing forgotten, nothing written.
	if changed, err := k.update([]Member{m("self", "10.0.0.9:7948", StatusAlive)}, now.Add(time.Minute)); err != nil || changed {
		t.Fatalf("a restart's lone view rewrote the file: %v %v", changed, err)
	}
	// a moved, b left.
	if changed, err := k.update([]Member{m("a", "10.0.1.2:7948", StatusAlive), m("b", "10.0.0.3:7948", StatusLeft)}, now); err != nil || !changed {
		t.Fatalf("move and leave: %v %v", changed, err)
	}
	k2, err := loadKnownPeers(dir, "self")
	if err != nil {
		t.Fatal(err)
	}
	if got := k2.seeds("10.0.1.2:7948"); len(got) != 0 {
		t.Fatalf("reloaded seeds without own address: %v", got)
	}
	if got := k2.seeds(""); !slices.Equal(got, []string{"10.0.1.2:7948"}) {
		t.Fatalf("reloaded: %v", got)
	}

	// Bounded: the most recently seen stay.
	var many []Member
	for i := range maxKnownPeers + 10 {
		many = append(many, m(fmt.Sprintf("n%02d", i), fmt.Sprintf("10.1.0.%d:7948", i), StatusAlive))
	}
	if _, err := k2.update(many[:10], now); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.update(many[10:], now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	k3, err := loadKnownPeers(dir, "self")
	if err != nil {
		t.Fatal(err)
	}
	got := k3.seeds("")
	if len(got) != maxKnownPeers || !slices.Contains(got, "10.1.0.41:7948") || slices.Contains(got, "10.0.1.2:7948") {
		t.Fatalf("bounded list (%d): %v", len(got), got)
	}

	// A failed write is retried at the next update, even without a change.
	path := filepath.Join(dir, peersFileName)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil { // the rename onto it fails
		t.Fatal(err)
	}
	if _, err := k3.update([]Member{m("z", "10.2.0.1:7948", StatusAlive)}, now.Add(2*time.Hour)); err == nil {
		t.Fatal("writing over a directory succeeded")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if changed, err := k3.update(nil, now.Add(2*time.Hour)); err != nil || !changed {
		t.Fatalf("retry after a failed write: %v %v", changed, err)
	}
	if k, err := loadKnownPeers(dir, "self"); err != nil || !slices.Contains(k.seeds(""), "10.2.0.1:7948") {
		t.Fatalf("the retried write lacks the new member: %v", err)
	}

	// A corrupt file is an error to log and an empty list, not a failed start.
	if err := os.WriteFile(filepath.Join(dir, peersFileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := loadKnownPeers(dir, "self"); err == nil || len(k.seeds("")) != 0 {
		t.Fatalf("corrupt file: %v %v", k.seeds(""), err)
	}
}
