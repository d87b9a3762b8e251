package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/storage"
)

// agentOpts tunes startAgentWith.
type agentOpts struct {
	join  []string
	token string
	// loader wraps the node's runtime engine, e.g. to refuse a module.
	loader func(Loader) Loader
	// raft adjusts the Raft configuration (snapshot thresholds).
	raft func(*Config)
}

// edgeAgent is a test agent with its edge handler on a real socket.
type edgeAgent struct {
	*testAgent
	edge *httptest.Server
}

// startAgentWith starts an agent as startTestAgent does, with the options
// above and an edge server, so tests can call its functions over HTTP.
func startAgentWith(t *testing.T, o agentOpts) *edgeAgent {
	t.Helper()
	dir := t.TempDir()
	rc := testConfig(t, dir)
	if o.raft != nil {
		o.raft(&rc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local",
		Join: o.join, JoinToken: o.token, Version: "test",
		Autopilot: AutopilotConfig{DeadServerTimeout: 2 * time.Second, Interval: 100 * time.Millisecond},
		Logger:    rc.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{Agent: a, dir: dir}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine := enginetest.Engine(t)
	var loader Loader = engine
	if o.loader != nil {
		loader = o.loader(engine)
	}
	router := &edge.Router{}
	ta.rec = NewReconciler(a.Store(), a.BlobReader(64<<20), loader, router, log)
	a.SetReconciler(ta.rec)
	rctx, stop := context.WithCancel(context.Background())
	ta.stopRec, ta.recDone = stop, make(chan struct{})
	go func() { defer close(ta.recDone); ta.rec.Run(rctx) }()
	ea := &edgeAgent{testAgent: ta, edge: httptest.NewServer(&edge.Handler{Invoker: engine, Router: router, Logger: log})}
	t.Cleanup(func() { ea.edge.Close(); ta.close() })
	return ea
}

// get calls path on the agent's edge.
func (ea *edgeAgent) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get(ea.edge.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// pickyLoader refuses to load the function named refuse and blocks
// loading the one named block until release is closed; it loads others.
type pickyLoader struct {
	Loader
	refuse, block string
	release       chan struct{}
}

var errRefused = errors.New("the runtime refuses the module (test)")

func (p *pickyLoader) Load(ctx context.Context, spec runtime.FunctionSpec) (*runtime.Function, error) {
	switch spec.Name {
	case p.refuse:
		return nil, errRefused
	case p.block:
		select {
		case <-p.release:
		case <-ctx.Done():
		}
		return nil, errors.New("released")
	}
	return p.Loader.Load(ctx, spec)
}

// A deploy with wait names the member that cannot serve the version:
// Agent.WaitServable's error, and the admin API's answer, name the node
// whose runtime refused the module (not the nodes that serve it), and a
// node still loading when the wait ends is named as not servable yet.
func TestAgentWaitServableNamesTheNodeThatFailed(t *testing.T) {
	first := startAgentWith(t, agentOpts{})
	seed := []string{first.PeerAddr()}
	second := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated})
	picky := &pickyLoader{refuse: "tiny", block: "slow", release: make(chan struct{})}
	bad := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated,
		loader: func(l Loader) Loader { picky.Loader = l; return picky }})
	t.Cleanup(func() { close(picky.release) }) // runs before bad's close
	waitConfig(t, first.testAgent, 3, 3)
	badID, goodIDs := bad.Store().Node().ID(), []string{first.Store().Node().ID(), second.Store().Node().ID()}

	api, err := NewAPI(APIConfig{
		Registry: first.Store(), Blobs: first.Store().Blobs(), TokenHash: HashToken(testToken),
		Check: first.rec.CheckDeploy, WaitReady: first.WaitServable,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	client := NewClient(srv.URL, testToken, srv.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The runtime of one member refuses the module: 500 not_ready naming it.
	spec := storage.Spec{Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/tiny/*"}}}
	_, err = client.Deploy(ctx, "tiny", bytes.NewReader(wat(t)), spec, DeployOptions{Wait: true, WaitTimeout: 30 * time.Second})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || ae.Code != CodeNotReady {
		t.Fatalf("deploy with wait where one node refuses the module: %v", err)
	}
	for _, want := range []string{badID, errRefused.Error(), "is committed", "roll back"} {
		if !strings.Contains(ae.Message, want) {
			t.Errorf("the API's answer %q does not contain %q", ae.Message, want)
		}
	}
	f, ok := first.Store().Function("tiny")
	if !ok {
		t.Fatal("the deploy is not committed")
	}
	// The same from the agent directly, on another node than the deployer.
	err = second.WaitServable(ctx, "tiny", f.Active)
	if !errors.Is(err, ErrNotServable) || !strings.Contains(err.Error(), badID) || !strings.Contains(err.Error(), errRefused.Error()) {
		t.Fatalf("WaitServable on the second node: %v; want ErrNotServable naming %s and the reason", err, badID)
	}
	for _, id := range goodIDs {
		if strings.Contains(err.Error(), id) {
			t.Errorf("WaitServable's error %q names %s, which serves the version", err, id)
		}
	}
	// On the node that failed, the error says so (without its own ID).
	err = bad.WaitServable(ctx, "tiny", f.Active)
	if !errors.Is(err, ErrNotServable) || !strings.Contains(err.Error(), "on this node") || !strings.Contains(err.Error(), errRefused.Error()) {
		t.Fatalf("WaitServable on the node that failed: %v", err)
	}
	for _, a := range []*edgeAgent{first, second} {
		if code := a.get(t, "/tiny/x"); code != 200 {
			t.Errorf("a node that could load the module answered %d", code)
		}
	}

	// A member that is still loading when the wait ends: 504 naming it.
	spec.Routes = []storage.Route{{Path: "/slow/*"}}
	_, err = client.Deploy(ctx, "slow", bytes.NewReader(wat(t)), spec, DeployOptions{Wait: true, WaitTimeout: 2 * time.Second})
	if !errors.As(err, &ae) || ae.Status != http.StatusGatewayTimeout || ae.Code != CodeWaitTimeout {
		t.Fatalf("deploy with wait where one node is still loading: %v", err)
	}
	if !strings.Contains(ae.Message, "not servable yet on") || !strings.Contains(ae.Message, badID) {
		t.Errorf("the API's answer %q does not name the pending node %s", ae.Message, badID)
	}
}

// customSection returns module with a custom section appended: the same
// code under a different sha256.
func customSection(module []byte, name string) []byte {
	payload := append([]byte{byte(len(name))}, name...)
	out := append([]byte(nil), module...)
	return append(append(out, 0, byte(len(payload))), payload...)
}

// Nodes that join after the log was truncated get the registry from a
// snapshot and still fetch the module of every version, not only the
// active one: once the only node that received the uploads is gone, they
// roll back to the older version and serve it from their own stores.
func TestAgentLateJoinersFetchEveryVersionsModule(t *testing.T) {
	truncate := func(c *Config) { c.TrailingLogs = 1; c.SnapshotThreshold = 1 << 20 }
	first := startAgentWith(t, agentOpts{raft: truncate})
	old, cur := wat(t), customSection(wat(t), "gojinn-v2")
	oldSHA, _ := putBlob(t, first.Store(), old)
	curSHA, _ := putBlob(t, first.Store(), cur)
	if oldSHA == curSHA {
		t.Fatal("the two modules share a sha256")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	v1, err := first.Store().Deploy(ctx, "tiny", storage.Spec{SHA256: oldSHA, Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/old/*"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = first.Store().Deploy(ctx, "tiny", storage.Spec{SHA256: curSHA, Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/new/*"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Store().Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	if idx, err := first.Store().Node().bolt.FirstIndex(); err != nil || idx <= 1 {
		t.Fatalf("log starts at %d (%v) after a snapshot with TrailingLogs 1: not truncated", idx, err)
	}

	seed := []string{first.PeerAddr()}
	late := []*edgeAgent{
		startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated}),
		startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated}),
	}
	waitConfig(t, first.testAgent, 3, 3)
	for i, a := range late {
		waitFor(t, 60*time.Second, fmt.Sprintf("late node %d to hold both modules", i), func() bool {
			return a.Store().Blobs().Has(oldSHA) && a.Store().Blobs().Has(curSHA)
		})
		for _, sha := range []string{oldSHA, curSHA} {
			b, err := a.Store().Blobs().ReadAll(sha)
			if err != nil || sha256hex(b) != sha {
				t.Fatalf("late node %d: module %s: %d bytes hashing to %s, %v", i, sha, len(b), sha256hex(b), err)
			}
		}
		// The registry came from the leader's snapshot, not the log.
		snaps, _ := os.ReadDir(filepath.Join(a.dir, "raft", "snapshots"))
		if len(snaps) == 0 {
			t.Fatalf("late node %d installed no snapshot: the test did not exercise a truncated log", i)
		}
	}

	// The only node that received the uploads goes away for good.
	first.edge.Close()
	first.close()
	waitFor(t, 30*time.Second, "a leader among the late nodes", func() bool {
		return late[0].Store().Node().IsLeader() || late[1].Store().Node().IsLeader()
	})
	if _, err := late[0].Store().Rollback(ctx, "tiny", v1.Version); err != nil {
		t.Fatalf("rollback without the original node: %v", err)
	}
	for i, a := range late {
		if err := a.rec.WaitReady(ctx, "tiny", v1.Version); err != nil {
			t.Fatalf("late node %d: %v", i, err)
		}
		if code := a.get(t, "/old/x"); code != 200 {
			t.Errorf("late node %d answered %d on the rolled-back version's route", i, code)
		}
		// 404 once the node knows it has caught up with the new
		// leader's log; until then an unknown route is 503 (a route
		// table that may lag, RouteTable.CatchingUp), which a fresh-clone
		// run hit in about half the runs right after the election.
		var code int
		waitFor(t, 30*time.Second, fmt.Sprintf("late node %d to answer 404 on the newer version's route after the rollback", i), func() bool {
			code = a.get(t, "/new/x")
			return code == 404
		})
	}
}

// A node that leaves (leave_on_shutdown, Agent.Leave) is removed from the
// Raft configuration and shows as left, not dead, to the others.
func TestAgentLeaveRemovesTheNode(t *testing.T) {
	first := startAgentWith(t, agentOpts{})
	seed := []string{first.PeerAddr()}
	second := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated})
	third := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated})
	waitConfig(t, first.testAgent, 3, 3)
	// The leaver is a follower here; Store.Leave's leadership hand-over
	// is TestClusterAutopilot's and TestStoreLeave's.
	leaver := third
	if leaver.Store().Node().IsLeader() {
		leaver = second
	}
	id := leaver.Store().Node().ID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	leaver.close()
	for _, a := range []*edgeAgent{first, second, third} {
		if a == leaver {
			continue
		}
		// Leave returned once the leader committed the removal; a
		// follower applies it a moment later.
		waitFor(t, 10*time.Second, "the configuration without the node that left", func() bool {
			servers, err := a.Store().Node().Servers()
			if err != nil || len(servers) != 2 {
				return false
			}
			for _, s := range servers {
				if s.ID == id {
					return false
				}
			}
			return true
		})
		waitFor(t, 10*time.Second, "the others to see the node as left", func() bool {
			for _, m := range a.MemberInfos() {
				if m.Name == id {
					return m.Status == string(StatusLeft)
				}
			}
			return false
		})
	}
}
