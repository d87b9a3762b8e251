package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/guestlog"
	"github.com/gojinn/gojinn/storage"
)

type testAgent struct {
	*Agent
	logs    *guestlog.Buffer // the node's guest log lines (AgentConfig.Logs)
	dir     string
	rec     *Reconciler
	stopRec context.CancelFunc
	recDone chan struct{}
}

func startTestAgent(t *testing.T, dir string, join []string, token string) (*testAgent, error) {
	return startTestAgentExpect(t, dir, join, token, 0)
}

func startTestAgentExpect(t *testing.T, dir string, join []string, token string, expect int) (*testAgent, error) {
	t.Helper()
	rc := testConfig(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logs := guestlog.New(guestlog.Config{})
	a, err := StartAgent(ctx, AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
		Join: join, JoinToken: token, Version: "test", BootstrapExpect: expect,
		Autopilot: AutopilotConfig{DeadServerTimeout: 2 * time.Second, Interval: 100 * time.Millisecond},
		Logs:      logs,
		Logger:    rc.Logger,
	})
	if err != nil {
		return nil, err
	}
	ta := &testAgent{Agent: a, logs: logs, dir: dir}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ta.rec = NewReconciler(a.Store(), a.BlobReader(64<<20), enginetest.Engine(t), &edge.Router{}, log)
	a.SetReconciler(ta.rec)
	rctx, stop := context.WithCancel(context.Background())
	ta.stopRec, ta.recDone = stop, make(chan struct{})
	go func() { defer close(ta.recDone); ta.rec.Run(rctx) }()
	t.Cleanup(ta.close)
	return ta, nil
}

func (ta *testAgent) close() {
	if ta.stopRec == nil {
		return
	}
	ta.stopRec()
	<-ta.recDone
	ta.stopRec = nil
	ta.Close()
}

// Three agents over real sockets with mutual TLS: the first bootstraps and
// prints a join token; the others enroll with it and join Raft and gossip;
// a deploy on the last is servable everywhere; a node with a wrong token is
// refused; a restarted node rejoins on new addresses by itself.
func TestAgentsFormACluster(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if first.JoinTokenCreated == "" {
		t.Fatal("bootstrap printed no join token")
	}
	seed := []string{first.PeerAddr()}
	if _, err := startTestAgent(t, t.TempDir(), seed, strings.Repeat("A", 87)); err == nil {
		t.Fatal("a node with a wrong token joined")
	}
	second, err := startTestAgent(t, t.TempDir(), seed, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	third, err := startTestAgent(t, t.TempDir(), seed, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	agents := []*testAgent{first, second, third}
	// Only the node holding the CA is a seed for new nodes (the banner
	// offers only it).
	if !first.Enrolls() || second.Enrolls() || third.Enrolls() {
		t.Fatalf("enrolls: bootstrap %v, joined %v %v; want only the bootstrap node", first.Enrolls(), second.Enrolls(), third.Enrolls())
	}
	waitFor(t, 30*time.Second, "3 voters and 3 alive members", func() bool {
		servers, err := first.Store().Node().Servers()
		if err != nil {
			return false
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		alive := 0
		for _, m := range first.Members() {
			if m.Status == StatusAlive {
				alive++
			}
		}
		return voters == 3 && alive == 3
	})

	// Deploy on the third node (not the leader): servable on all three.
	module := wat(t)
	spec := storage.Spec{Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/t/*"}}}
	spec.SHA256, spec.Size = putBlob(t, third.Store(), module)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := third.Store().Deploy(ctx, "tiny", spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.WaitServable(ctx, "tiny", v.Version); err != nil {
		t.Fatal(err)
	}
	for i, a := range agents {
		if st := a.rec.VersionState("tiny", v.Version); st.State != "ready" {
			t.Fatalf("agent %d: %+v", i, st)
		}
	}

	// Restart the second node: it rejoins with new addresses, no token.
	dir := second.dir
	secondID := second.Store().Node().ID()
	second.close()
	// Restart once the cluster has noticed the node is gone, as a real
	// restart would. (An instant restart whose new address reaches the
	// leader while its replication pipeline to the old address is failing
	// trips a data race inside hashicorp/raft v1.7.3: replication.go logs
	// s.peer without peerLock while startStopReplication updates it.)
	waitFor(t, 30*time.Second, "gossip to see the stopped node go", func() bool {
		for _, m := range first.Members() {
			if m.Name == secondID {
				return m.Status != StatusAlive
			}
		}
		return true
	})
	again, err := startTestAgent(t, dir, seed, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the restarted node back in the configuration at its new address", func() bool {
		servers, err := first.Store().Node().Servers()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.ID == again.Store().Node().ID() {
				return s.Addr == again.Store().Node().Addr()
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "gossip to see the restarted node alive", func() bool {
		for _, m := range first.Members() {
			if m.Name == secondID {
				return m.Status == StatusAlive
			}
		}
		return false
	})
	v2, err := first.Store().Deploy(ctx, "tiny", spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.WaitServable(ctx, "tiny", v2.Version); err != nil {
		t.Fatal(err)
	}
	if st := again.rec.VersionState("tiny", v2.Version); st.State != "ready" {
		t.Fatalf("restarted node: %+v", st)
	}
}

func putBlob(t *testing.T, s *Store, module []byte) (string, int64) {
	t.Helper()
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	if _, err := s.Blobs().Put(sha, bytes.NewReader(module), 0); err != nil {
		t.Fatal(err)
	}
	return sha, int64(len(module))
}

// Enrollment retries unreachable seeds JoinRetryMax times, then says
// which seed failed and what to do.
func TestAgentEnrollRetriesThenGivesUp(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	rc := testConfig(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = StartAgent(ctx, AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
		Join: []string{"127.0.0.1:1"}, JoinToken: first.JoinTokenCreated, JoinRetryMax: 2, Logger: rc.Logger,
	})
	if err == nil || !strings.Contains(err.Error(), "no seed enrolled") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("got %v", err)
	}
}

// With bootstrap-expect 3 the cluster holds its first election only once
// three servers are there, and all three start as voters.
func TestAgentsBootstrapExpect(t *testing.T) {
	first, err := startTestAgentExpect(t, t.TempDir(), nil, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	seed := []string{first.PeerAddr()}
	second, err := startTestAgent(t, t.TempDir(), seed, first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	// Two servers: no election yet, so no leader and no writes.
	waitFor(t, 10*time.Second, "the second server's join to be seen", func() bool {
		first.expectMu.Lock()
		defer first.expectMu.Unlock()
		return len(first.pending) == 1
	})
	if addr, _ := first.Store().Node().Leader(); addr != "" {
		t.Fatalf("a leader (%s) before the expected servers arrived", addr)
	}
	if _, err := startTestAgent(t, t.TempDir(), seed, first.JoinTokenCreated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a leader with three voters", func() bool {
		servers, err := second.Store().Node().Servers()
		if err != nil {
			return false
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		addr, _ := second.Store().Node().Leader()
		return voters == 3 && addr != ""
	})
}

// Enrollment refuses a node ID the cluster already has, so a token holder
// cannot get a certificate naming an existing member.
func TestAgentEnrollRefusesExistingID(t *testing.T) {
	first, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseJoinToken(first.JoinTokenCreated)
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadOrCreateNodeKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = RequestJoin(ctx, first.PeerAddr(), tok, key, first.Store().Node().ID())
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "already belongs") {
		t.Fatalf("enrolling under the leader's ID: %v", err)
	}
	if _, err := RequestJoin(ctx, first.PeerAddr(), tok, key, "fresh-node-1"); err != nil {
		t.Fatalf("a new ID: %v", err)
	}
}

// A data directory of one cluster started with another cluster's join
// token is refused with the reason, instead of running in its old cluster
// while the token and the seed are ignored; its own cluster's token is
// fine.
func TestAgentRefusesAnotherClustersToken(t *testing.T) {
	a, err := startTestAgent(t, t.TempDir(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tokenA := a.JoinTokenCreated
	dirB := t.TempDir()
	b, err := startTestAgent(t, dirB, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tokenB := b.JoinTokenCreated
	b.close()
	_, err = startTestAgent(t, dirB, []string{a.PeerAddr()}, tokenA)
	if err == nil || !strings.Contains(err.Error(), "belongs to the cluster with CA") || !strings.Contains(err.Error(), "empty data directory") {
		t.Fatalf("another cluster's token: %v", err)
	}
	if _, err := startTestAgent(t, dirB, nil, tokenB); err != nil {
		t.Fatalf("its own cluster's token: %v", err)
	}
}
