package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/storage"
	"github.com/hashicorp/raft"
)

// harness is an in-process cluster: N real nodes, each with its own data
// directory, Raft node, runtime engine, reconciler, peer API and edge
// handler. With tcp set, Raft runs over real TCP sockets; otherwise over
// raft's in-memory transport, which can partition.
type harness struct {
	t      *testing.T
	tcp    bool
	secret string
	nodes  []*hnode

	mu        sync.Mutex
	urls      map[string]string // node ID -> peer API URL
	cut       map[[2]int]bool   // partitioned pairs
	inmem     map[int]*raft.InmemTransport
	inmemAddr map[int]raft.ServerAddress
}

type hnode struct {
	i       int
	dir     string
	store   *Store
	engine  *runtime.Engine
	router  *edge.Router
	rec     *Reconciler
	peer    *httptest.Server
	edge    *httptest.Server
	stopRec context.CancelFunc
	recDone chan struct{}
	up      bool
}

// peersFrom is node i's view of the peer URLs: partitioned peers are
// unreachable.
type peersFrom struct {
	h *harness
	i int
}

func (p peersFrom) PeerURL(id string) (string, bool) {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	for _, n := range p.h.nodes {
		if n.store != nil && n.up && n.store.node.ID() == id && p.h.cut[[2]int{p.i, n.i}] {
			return "", false
		}
	}
	u, ok := p.h.urls[id]
	return u, ok
}

func newHarness(t *testing.T, tcp bool) *harness {
	h := &harness{t: t, tcp: tcp, secret: "test-cluster-secret", urls: map[string]string{}, cut: map[[2]int]bool{},
		inmem: map[int]*raft.InmemTransport{}, inmemAddr: map[int]raft.ServerAddress{}}
	t.Cleanup(func() {
		for _, n := range h.nodes {
			if n.up {
				h.Kill(n.i)
			}
		}
	})
	return h
}

// Start adds and starts a node; the first bootstraps, the others join the
// current leader as voters (voter) or non-voters.
func (h *harness) Start(voter bool) *hnode {
	n := &hnode{i: len(h.nodes), dir: h.t.TempDir()}
	// Under mu: peersFrom reads nodes, store and up from Raft's and the
	// reconcilers' goroutines.
	h.mu.Lock()
	h.nodes = append(h.nodes, n)
	h.mu.Unlock()
	h.boot(n, voter)
	return n
}

func (h *harness) boot(n *hnode, voter bool) {
	t := h.t
	cfg := testConfig(t, n.dir)
	cfg.Join = n.i > 0
	if !h.tcp {
		addr, trans := raft.NewInmemTransport("")
		h.mu.Lock()
		h.inmem[n.i], h.inmemAddr[n.i] = trans, addr
		for j, other := range h.inmem {
			if j != n.i && !h.cut[[2]int{n.i, j}] {
				trans.Connect(h.inmemAddr[j], other)
				other.Connect(addr, trans)
			}
		}
		h.mu.Unlock()
		cfg.Transport = trans
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		t.Fatalf("node %d: %v", n.i, err)
	}
	h.mu.Lock()
	n.store = s
	h.mu.Unlock()
	client := &PeerClient{HTTP: &http.Client{Timeout: 30 * time.Second}, Secret: h.secret}
	peers := peersFrom{h, n.i}
	s.EnableForwarding(client, peers)
	n.engine = enginetest.Engine(t)
	n.router = &edge.Router{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	blobs := &PeerBlobs{Local: s.Blobs(), Node: s.node, Client: client, Peers: peers, MaxBytes: 64 << 20}
	n.rec = NewReconciler(s, blobs, n.engine, n.router, log)
	api, err := NewPeerAPI(PeerAPIConfig{Store: s, Rec: n.rec, Auth: SharedSecretAuth(h.secret), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.peer = httptest.NewServer(api)
	n.edge = httptest.NewServer(&edge.Handler{Invoker: n.engine, Router: n.router, Logger: log})
	rctx, stop := context.WithCancel(context.Background())
	n.stopRec, n.recDone = stop, make(chan struct{})
	go func() { defer close(n.recDone); n.rec.Run(rctx) }()
	h.mu.Lock()
	h.urls[s.node.ID()] = n.peer.URL
	restart := n.up
	n.up = true
	h.mu.Unlock()
	if n.i > 0 || restart {
		// A restarted node rejoins too: its address may have changed.
		h.join(n, voter)
	}
}

// join asks the leader to add n, retrying through elections.
func (h *harness) join(n *hnode, voter bool) {
	req := JoinRequest{ID: n.store.node.ID(), RaftAddr: n.store.node.Addr(), Voter: voter}
	client := &PeerClient{HTTP: &http.Client{Timeout: 10 * time.Second}, Secret: h.secret}
	var last error
	h.t.Cleanup(func() {
		if h.t.Failed() && last != nil {
			h.t.Logf("node %d's last join error: %v", n.i, last)
		}
	})
	waitFor(h.t, 30*time.Second, fmt.Sprintf("node %d to join", n.i), func() bool {
		l := h.leader()
		switch l {
		case nil:
			return false
		case n:
			// The restarted node won an election with its old
			// configuration: it records its own new address.
			last = n.store.node.AddServer(context.Background(), req.ID, req.RaftAddr, voter)
		default:
			last = client.Join(context.Background(), l.peer.URL, req)
		}
		return last == nil
	})
}

// leader returns the live node that leads, or nil.
func (h *harness) leader() *hnode {
	for _, n := range h.nodes {
		if n.up && n.store.node.IsLeader() {
			return n
		}
	}
	return nil
}

func (h *harness) waitLeader(exclude ...*hnode) *hnode {
	var l *hnode
	waitFor(h.t, 30*time.Second, "a leader", func() bool {
		l = h.leader()
		for _, x := range exclude {
			if l == x {
				return false
			}
		}
		return l != nil
	})
	return l
}

// Kill stops node i abruptly (no graceful leave).
func (h *harness) Kill(i int) {
	n := h.nodes[i]
	h.mu.Lock()
	n.up = false
	h.mu.Unlock()
	n.peer.Close()
	n.edge.Close()
	n.stopRec()
	<-n.recDone
	if err := n.store.Close(); err != nil {
		h.t.Errorf("node %d close: %v", i, err)
	}
	_ = n.engine.Close(context.Background())
	h.mu.Lock()
	if tr := h.inmem[i]; tr != nil {
		for j, other := range h.inmem {
			if j != i {
				other.Disconnect(h.inmemAddr[i])
			}
		}
		delete(h.inmem, i)
	}
	h.mu.Unlock()
}

// Restart starts node i again over its data directory, on a new address.
func (h *harness) Restart(i int, voter bool) {
	n := h.nodes[i]
	h.mu.Lock()
	n.up = true // marks a restart for boot
	h.mu.Unlock()
	h.boot(n, voter)
}

// configuration returns n's Raft servers and how many of them vote.
func configuration(t *testing.T, n *Node) (servers []ServerInfo, voters int) {
	t.Helper()
	servers, err := n.Servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Voter {
			voters++
		}
	}
	return servers, voters
}

// follower returns a node other than leader.
// threeVoters starts a cluster of three voters and returns it, its
// leader and a follower.
func threeVoters(t *testing.T) (h *harness, leader, follower *hnode) {
	t.Helper()
	h = newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	leader = h.waitLeader()
	return h, leader, h.follower(leader)
}

func (h *harness) follower(leader *hnode) *hnode {
	for _, n := range h.nodes {
		if n != leader {
			return n
		}
	}
	h.t.Fatal("the cluster has no node but the leader")
	return nil
}

// Partition cuts the listed nodes off from every other node, both for
// Raft and for the peer API.
func (h *harness) Partition(minority ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := map[int]bool{}
	for _, i := range minority {
		in[i] = true
	}
	for _, a := range h.nodes {
		for _, b := range h.nodes {
			if in[a.i] != in[b.i] {
				h.cut[[2]int{a.i, b.i}] = true
				if ta := h.inmem[a.i]; ta != nil {
					ta.Disconnect(h.inmemAddr[b.i])
				}
			}
		}
	}
}

// Heal removes every partition.
func (h *harness) Heal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cut = map[[2]int]bool{}
	for i, ti := range h.inmem {
		for j, tj := range h.inmem {
			if i != j {
				ti.Connect(h.inmemAddr[j], tj)
			}
		}
	}
}

// deploy uploads module to node n's blob store and deploys it there.
func (h *harness) deploy(n *hnode, name string, module []byte, routes ...storage.Route) (storage.Version, error) {
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	if _, err := n.store.Blobs().Put(sha, bytes.NewReader(module), 64<<20); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.store.Deploy(ctx, name, storage.Spec{SHA256: sha, Mode: storage.ModePooled, Routes: routes})
}

// adminAPI serves the admin API over node n as gojinn-node wires it: n's
// store and blob store, and n's reconciler's CheckDeploy, WaitReady and
// WaitRemoved; tweak adjusts the config before NewAPI. The returned
// apiHarness has no in-memory registry or blobs.
func (h *harness) adminAPI(n *hnode, tweak func(*APIConfig)) *apiHarness {
	h.t.Helper()
	cfg := APIConfig{
		Registry: n.store, Blobs: n.store.Blobs(), TokenHash: HashToken(testToken),
		Check: n.rec.CheckDeploy, WaitReady: n.rec.WaitReady, WaitRemoved: n.rec.WaitRemoved,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	handler, err := NewAPI(cfg)
	if err != nil {
		h.t.Fatalf("NewAPI: %v", err)
	}
	srv := httptest.NewServer(handler)
	h.t.Cleanup(srv.Close) // runs before the nodes are killed
	return &apiHarness{t: h.t, srv: srv, client: NewClient(srv.URL, testToken, srv.Client()), logs: &lockedBuffer{}}
}

// get calls path on node n's edge.
func (h *harness) get(n *hnode, path string) (int, string) {
	resp, err := http.Get(n.edge.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// servesEverywhere waits until every live node serves name at version.
func (h *harness) servesEverywhere(name string, version int64) {
	for _, n := range h.nodes {
		if !n.up {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := n.rec.WaitReady(ctx, name, version)
		cancel()
		if err != nil {
			h.t.Fatalf("node %d: %v", n.i, err)
		}
		// Caught up with the cluster too, so that a route it does not
		// have is a 404 (before, it is 503: it may not know it yet).
		waitFor(h.t, 30*time.Second, fmt.Sprintf("node %d to catch up", n.i), func() bool {
			return n.rec.caughtUp.Load()
		})
	}
}

func wat(t *testing.T) []byte {
	return runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
}

// The cluster story of the issue: 3 voters and 2 non-voters; a deploy on a
// follower serves on every node (blobs fetched from peers); the leader dies,
// a new one is elected and takes deploys; the old leader restarts on a new
// address and catches up.
func TestClusterDeployEverywhereAndFailover(t *testing.T) {
	for _, tcp := range []bool{true, false} {
		t.Run(map[bool]string{true: "tcp", false: "inmem"}[tcp], func(t *testing.T) {
			h := newHarness(t, tcp)
			for i := range 5 {
				h.Start(i < 3)
			}
			l := h.waitLeader()
			servers, voters := configuration(t, l.store.node)
			if len(servers) != 5 || voters != 3 {
				t.Fatalf("configuration: %+v, want 5 servers of which 3 voters", servers)
			}

			// Deploy on a non-voter: forwarded to the leader, served by all.
			v, err := h.deploy(h.nodes[4], "tiny", wat(t), storage.Route{Path: "/tiny/*"})
			if err != nil {
				t.Fatal(err)
			}
			h.servesEverywhere("tiny", v.Version)
			for _, n := range h.nodes {
				if code, _ := h.get(n, "/tiny/x"); code != 200 {
					t.Fatalf("node %d answered %d", n.i, code)
				}
			}

			// Kill the leader: a new one takes the next deploy. A loaded
			// machine may be between elections here: wait for one.
			old := h.waitLeader()
			h.Kill(old.i)
			nl := h.waitLeader(old)
			var follower *hnode
			for _, n := range h.nodes {
				if n.up && n != nl {
					follower = n
					break
				}
			}
			v2, err := h.deploy(follower, "tiny", wat(t), storage.Route{Path: "/v2/*"})
			if err != nil {
				t.Fatalf("deploy after failover: %v", err)
			}
			h.servesEverywhere("tiny", v2.Version)

			// The old leader restarts (on a new address) and catches up.
			h.Restart(old.i, true)
			h.servesEverywhere("tiny", v2.Version)
			if code, _ := h.get(old, "/v2/x"); code != 200 {
				t.Fatalf("restarted node answered %d", code)
			}
		})
	}
}

// A partitioned minority refuses writes (ErrUnavailable, saying to retry)
// while the majority accepts them; after healing, the minority converges.
func TestClusterPartition(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	l := h.waitLeader()
	// Cut off one follower.
	minor := h.follower(l)
	h.Partition(minor.i)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := minor.store.Deploy(ctx, "x", putModule(t, minor.store, "minority"))
	cancel()
	refusedWrite(t, "the minority", err)
	v, err := h.deploy(l, "tiny", wat(t), storage.Route{Path: "/tiny/*"})
	if err != nil {
		t.Fatalf("the majority refused a write: %v", err)
	}
	if _, ok := minor.store.Function("tiny"); ok {
		t.Fatal("the minority saw a write during the partition")
	}
	h.Heal()
	h.servesEverywhere("tiny", v.Version)
	if code, _ := h.get(minor, "/tiny/x"); code != 200 {
		t.Fatalf("healed minority answered %d", code)
	}
	if _, ok := minor.store.Function("x"); ok {
		t.Fatal("the write refused during the partition appeared later")
	}
}

// Peer API calls without the cluster secret are refused.
func TestPeerAPIAuth(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	for _, c := range []*PeerClient{{HTTP: http.DefaultClient}, {HTTP: http.DefaultClient, Secret: "wrong"}} {
		err := c.Join(context.Background(), n.peer.URL, JoinRequest{ID: "intruder", RaftAddr: "x:1", Voter: true})
		if err == nil {
			t.Fatal("join without the secret succeeded")
		}
		if err := c.FetchBlob(context.Background(), n.peer.URL, "00", n.store.Blobs(), 1); err == nil {
			t.Fatal("blob fetch without the secret succeeded")
		}
	}
	servers, _ := n.store.node.Servers()
	if len(servers) != 1 {
		t.Fatalf("servers: %+v", servers)
	}
	_ = filepath.Join
}

// servers returns the leader's view of the configuration: how many
// servers and how many voters, and whether id is among them.
func (h *harness) servers(id string) (total, voters int, present bool) {
	l := h.leader()
	if l == nil {
		return 0, 0, false
	}
	ss, err := l.store.node.Servers()
	if err != nil {
		return 0, 0, false
	}
	for _, s := range ss {
		if s.Voter {
			voters++
		}
		present = present || s.ID == id
	}
	return len(ss), voters, present
}

// A voter that dies is removed after the dead-server timeout and a
// healthy non-voter is promoted, so the cluster keeps three voters; a node
// that leaves gracefully is removed at once; a sixth server asking to
// vote joins as a non-voter because three vote already.
func TestClusterAutopilot(t *testing.T) {
	h := newHarness(t, false)
	for i := range 5 {
		h.Start(i < 3)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, n := range h.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.store.node.RunAutopilot(ctx, AutopilotConfig{MaxVoters: 3, DeadServerTimeout: 500 * time.Millisecond, Interval: 50 * time.Millisecond})
		}()
	}
	l := h.waitLeader()
	var victim *hnode
	for _, n := range h.nodes[:3] {
		if n != l {
			victim = n
			break
		}
	}
	victimID := victim.store.node.ID()
	h.Kill(victim.i)
	waitFor(t, 20*time.Second, "the dead voter to be replaced", func() bool {
		total, voters, present := h.servers(victimID)
		return total == 4 && voters == 3 && !present
	})

	extra := h.Start(true)
	if _, voters, present := h.servers(extra.store.node.ID()); !present || voters != 3 {
		t.Fatalf("a sixth server asking to vote: present %v, voters %d (want 3)", present, voters)
	}

	leaver := h.nodes[4]
	if leaver == h.leader() {
		leaver = h.nodes[3]
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	if err := leaver.store.Leave(lctx); err != nil {
		t.Fatal(err)
	}
	if _, _, present := h.servers(leaver.store.node.ID()); present {
		t.Fatal("a node that left is still in the configuration")
	}
	h.Kill(leaver.i)
}

// KV writes on a follower are forwarded to the leader, results and
// compare-and-set conflicts included.
func TestClusterKVForwarding(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	l := h.waitLeader()
	f := h.follower(l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := f.store.KVPut(ctx, "fn", "k", []byte("v1"), KVWriteOptions{})
	if err != nil || v == 0 {
		t.Fatalf("put on a follower: %d %v", v, err)
	}
	e, err := l.store.KVGet(ctx, "fn", "k", ConsistencyLinearizable)
	if err != nil || string(e.Value) != "v1" {
		t.Fatalf("leader read: %+v %v", e, err)
	}
	_, err = f.store.KVCAS(ctx, "fn", "k", []byte("v2"), v+100, 0)
	var c *storage.KVConflictError
	if !errors.As(err, &c) || c.Current != v {
		t.Fatalf("CAS conflict through a follower: %v", err)
	}
}
