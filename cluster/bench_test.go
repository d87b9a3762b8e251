package cluster

// Benchmarks of the cluster against the targets of issue 4, section 7;
// docs/benchmarks.md ("Cluster") records the figures. Each benchmark runs
// a fixed number of rounds once and reports percentiles with
// b.ReportMetric, so run them with -benchtime 1x:
//
//	go test -run '^$' -bench 'Cluster' -benchtime 1x -count 1 ./cluster/

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
	"github.com/gojinn/gojinn/storage"
)

const benchSecret = "bench-cluster-secret"

// benchCluster is harness_test.go's harness for benchmarks, which get a
// *testing.B where the harness takes a *testing.T: real nodes over TCP
// Raft with peer APIs, and optionally a runtime engine and reconciler
// each. Each engine has its own compilation cache in the node's data
// directory, as a gojinn-node has, so every new module really compiles on
// every node.
type benchCluster struct {
	tb      testing.TB
	cfg     Config // Raft timeouts of every node
	engines bool
	client  *PeerClient

	mu    sync.Mutex
	urls  map[string]string // node ID -> peer API URL
	nodes []*bnode
}

type bnode struct {
	i      int
	dir    string
	voter  bool
	store  *Store
	engine *runtime.Engine
	reg    *prometheus.Registry // the engine's metrics
	rec    *Reconciler
	peer   *httptest.Server
	stop   context.CancelFunc // stops the reconciler
	done   chan struct{}      // closed when the reconciler has stopped
	up     bool
}

func newBenchCluster(tb testing.TB, cfg Config, engines bool) *benchCluster {
	c := &benchCluster{tb: tb, cfg: cfg, engines: engines, urls: map[string]string{},
		client: &PeerClient{HTTP: &http.Client{Timeout: 30 * time.Second}, Secret: benchSecret}}
	tb.Cleanup(func() {
		for _, n := range c.nodes {
			if n.up {
				c.kill(n)
			}
		}
	})
	return c
}

// PeerURL makes the cluster its nodes' PeerResolver.
func (c *benchCluster) PeerURL(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.urls[id]
	return u, ok
}

// start adds a node: the first bootstraps, the others join the leader.
func (c *benchCluster) start(voter bool) *bnode {
	n := &bnode{i: len(c.nodes), dir: c.tb.TempDir(), voter: voter}
	c.nodes = append(c.nodes, n)
	c.boot(n, false)
	return n
}

func (c *benchCluster) boot(n *bnode, restart bool) {
	tb := c.tb
	cfg := c.cfg
	cfg.DataDir = n.dir
	cfg.Join = n.i > 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		tb.Fatalf("node %d: %v", n.i, err)
	}
	n.store = s
	s.EnableForwarding(c.client, c)
	log := slog.New(slog.DiscardHandler)
	pc := PeerAPIConfig{Store: s, Auth: SharedSecretAuth(benchSecret), Logger: log}
	if c.engines {
		rc := runtime.DefaultConfig()
		rc.Logger = log
		rc.CacheDir = filepath.Join(n.dir, "compilecache")
		n.reg = prometheus.NewRegistry()
		if rc.Metrics, err = runtime.NewMetrics(n.reg); err != nil {
			tb.Fatal(err)
		}
		if n.engine, err = runtime.NewEngine(context.Background(), rc); err != nil {
			tb.Fatal(err)
		}
		blobs := &PeerBlobs{Local: s.Blobs(), Node: s.node, Client: c.client, Peers: c, MaxBytes: 64 << 20}
		n.rec = NewReconciler(s, blobs, n.engine, &edge.Router{}, log)
		pc.Rec = n.rec
		rctx, stop := context.WithCancel(context.Background())
		n.stop, n.done = stop, make(chan struct{})
		go func() { defer close(n.done); n.rec.Run(rctx) }()
	}
	api, err := NewPeerAPI(pc)
	if err != nil {
		tb.Fatal(err)
	}
	n.peer = httptest.NewServer(api)
	c.mu.Lock()
	c.urls[s.node.ID()] = n.peer.URL
	c.mu.Unlock()
	n.up = true
	if n.i > 0 || restart {
		// A restarted node rejoins too: it listens on a new address.
		c.join(n)
	}
}

func (c *benchCluster) join(n *bnode) {
	req := JoinRequest{ID: n.store.node.ID(), RaftAddr: n.store.node.Addr(), Voter: n.voter}
	benchWait(c.tb, 30*time.Second, fmt.Sprintf("node %d to join", n.i), func() bool {
		l := c.leader()
		return l != nil && l != n && c.client.Join(context.Background(), l.peer.URL, req) == nil
	})
}

// kill stops n abruptly, without leaving the cluster.
func (c *benchCluster) kill(n *bnode) {
	n.up = false
	n.peer.Close()
	if n.stop != nil {
		n.stop()
		<-n.done
	}
	if err := n.store.Close(); err != nil {
		c.tb.Errorf("node %d close: %v", n.i, err)
	}
	if n.engine != nil {
		_ = n.engine.Close(context.Background())
	}
}

// restart starts n again over its data directory, on a new address.
func (c *benchCluster) restart(n *bnode) { c.boot(n, true) }

// threeVoters starts three voters and returns the leader and a follower
// once the cluster is stable.
func (c *benchCluster) threeVoters() (leader, follower *bnode) {
	for range 3 {
		c.start(true)
	}
	leader = c.waitStable(3)
	for _, n := range c.nodes {
		if n != leader {
			return leader, n
		}
	}
	c.tb.Fatal("no follower")
	return nil, nil
}

func (c *benchCluster) leader() *bnode {
	for _, n := range c.nodes {
		if n.up && n.store.node.IsLeader() {
			return n
		}
	}
	return nil
}

// waitStable waits until every live node follows one leader, has applied
// everything it committed, and the configuration has voters voters.
func (c *benchCluster) waitStable(voters int) *bnode {
	var l *bnode
	benchWait(c.tb, 30*time.Second, "a stable cluster", func() bool {
		if l = c.leader(); l == nil {
			return false
		}
		ls := l.store.node.Status()
		if ls.Voters != voters {
			return false
		}
		for _, n := range c.nodes {
			if !n.up {
				continue
			}
			if st := n.store.node.Status(); st.Leader != l.store.node.Addr() || st.AppliedIndex < ls.CommitIndex {
				return false
			}
		}
		return true
	})
	return l
}

// benchWait polls cond until it holds or timeout passes.
func benchWait(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

// benchBlob stores module in s's blob store and returns its sha256.
func benchBlob(tb testing.TB, s *Store, module []byte) string {
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	if _, err := s.Blobs().Put(sha, bytes.NewReader(module), 64<<20); err != nil {
		tb.Fatal(err)
	}
	return sha
}

// withCustomSection returns module with a custom section appended: still
// valid wasm that runs the same, but with another sha256, so the node's
// caches (keyed on content) miss and it compiles again.
func withCustomSection(module []byte, name string, payload []byte) []byte {
	body := binary.AppendUvarint(nil, uint64(len(name))) // LEB128 u32
	body = append(append(body, name...), payload...)
	out := append(slices.Clip(module), 0) // section id 0: custom
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// pct returns the nearest-rank q-quantile (0 < q <= 1) of ds in seconds.
func pct(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))].Seconds()
}

// reportPcts reports p50, p90 or p99 as asked, and max, of ds in seconds
// under prefix.
func reportPcts(b *testing.B, prefix string, ds []time.Duration, qs ...float64) {
	for _, q := range qs {
		b.ReportMetric(pct(ds, q), fmt.Sprintf("%sp%d-s", prefix, int(q*100)))
	}
	b.ReportMetric(pct(ds, 1), prefix+"max-s")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// singleLoads loads n distinct variants of module into a fresh engine, one
// at a time, as a node's reconciler does, and returns each load's time and
// the CPU time of all n; then the first variant again into a second
// engine sharing the cache, which must be a cache hit.
func singleLoads(b *testing.B, module []byte, n int) (loads []time.Duration, cpu, cached time.Duration) {
	ctx := context.Background()
	cfg := runtime.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.CacheDir = b.TempDir()
	load := func(e *runtime.Engine, i int) time.Duration {
		m := withCustomSection(module, "gojinn-bench", fmt.Appendf(nil, "single-%d", i))
		spec := RuntimeSpec("single", storage.Version{Version: int64(i + 1), Spec: storage.Spec{Mode: storage.ModePooled}}, m)
		start := time.Now()
		if _, err := e.Load(ctx, spec); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	e, err := runtime.NewEngine(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	cpu = cpuTime(b)
	for i := range n {
		loads = append(loads, load(e, i))
	}
	cpu = cpuTime(b) - cpu
	_ = e.Close(ctx)
	e2, err := runtime.NewEngine(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e2.Close(ctx) }()
	return loads, cpu, load(e2, 0)
}

// Deploy propagation: from Store.Deploy returning (the version is
// committed) until every one of 5 nodes (3 voters, 2 non-voters, TCP)
// serves it, a distinct module each round so that no cache already holds
// it. The deploy goes through a non-voter, which first checks it as the
// admin API does (CheckDeploy compiles it, before the clock starts) and
// forwards it to the leader; every other node fetches the blob and the
// compiled artifacts from a peer (or compiles, when no peer has them).
// Target: p99 <= 1.5 s for a ~3 MB Go module. The request-all5 metrics
// time what a client waits instead: from the deploy request (the module
// already uploaded) through that one compile and the commit to servable
// on all 5.
func BenchmarkClusterDeployPropagation(b *testing.B) {
	for _, g := range []struct {
		name, dir string
		rounds    int
	}{
		{"json3mb", "runtime/testdata/guests/json3mb", 10},
		{"hello", "examples/hello", 3},
	} {
		b.Run(g.name, func(b *testing.B) {
			base := runtimetest.BuildGo(b, g.dir, true)
			single, cpu, cached := singleLoads(b, base, 3)

			c := newBenchCluster(b, FastConfig(), true)
			for i := range 5 {
				c.start(i < 3)
			}
			c.waitStable(3)
			from := c.nodes[4]
			var all, first, requests, cpus []time.Duration
			compiles := 0.0 // after the commit, on any node
			b.ResetTimer()
			for r := range g.rounds {
				module := withCustomSection(base, "gojinn-bench", fmt.Appendf(nil, "%s-%d", g.name, r))
				spec := storage.Spec{SHA256: benchBlob(b, from.store, module), Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/bench/*"}}}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				requested := time.Now()
				if err := from.rec.CheckDeploy(ctx, "bench", spec); err != nil {
					cancel()
					b.Fatal(err)
				}
				compiled0 := c.compilations(runtime.SourceCompiled)
				cpu0 := cpuTime(b)
				v, err := from.store.Deploy(ctx, "bench", spec)
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				committed := time.Now()
				ready := c.waitReadyAll(ctx, "bench", v.Version, committed)
				cancel()
				all = append(all, slices.Max(ready))
				requests = append(requests, committed.Sub(requested)+slices.Max(ready))
				first = append(first, slices.Min(ready))
				// The whole process's CPU time per node and round: the
				// five nodes' fetches, loads and any compiles share the
				// machine's cores.
				cpus = append(cpus, (cpuTime(b)-cpu0)/5)
				compiles += c.compilations(runtime.SourceCompiled) - compiled0
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(len(base))/1e6, "module-MB")
			reportPcts(b, "all5-", all, 0.5, 0.99)
			reportPcts(b, "request-all5-", requests, 0.5, 0.99)
			b.ReportMetric(pct(first, 0.5), "first-node-p50-s")
			b.ReportMetric(pct(cpus, 0.5), "cpu-per-node-p50-s")
			b.ReportMetric(compiles/float64(g.rounds), "compiles-per-deploy")
			b.ReportMetric(pct(single, 0.5), "single-node-load-p50-s")
			b.ReportMetric(cpu.Seconds()/float64(len(single)), "single-node-load-cpu-s")
			b.ReportMetric(cached.Seconds(), "cached-load-s")
		})
	}
}

// compilations sums gojinn_compilations_total{source} over the live
// nodes' engines.
func (c *benchCluster) compilations(source string) float64 {
	n := 0.0
	for _, node := range c.nodes {
		if !node.up || node.reg == nil {
			continue
		}
		n += runtimetest.Compilations(c.tb, node.reg, source)
	}
	return n
}

// waitReadyAll waits on every live node for name at version and returns
// each node's time from start.
func (c *benchCluster) waitReadyAll(ctx context.Context, name string, version int64, start time.Time) []time.Duration {
	var wg sync.WaitGroup
	ready := make([]time.Duration, len(c.nodes))
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Go(func() {
			errs[i] = n.rec.WaitReady(ctx, name, version)
			ready[i] = time.Since(start)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.tb.Fatal(err)
	}
	return ready
}

// Failover: from killing the leader of 3 voters (TCP) until a write
// through a survivor's Store (forwarded to whichever node leads, retried
// while none does) is acknowledged. The killed node restarts between
// rounds. Target: p50 <= 1 s with LAN timeouts.
func BenchmarkClusterFailover(b *testing.B) {
	defaults := DefaultConfig()
	defaults.RaftBind = "127.0.0.1:0"
	lan := LANConfig()
	lan.RaftBind = "127.0.0.1:0"
	for _, p := range []struct {
		name string
		cfg  Config
	}{
		{"timeouts-200ms", FastConfig()},
		{"lan-500ms", lan},
		{"raft-defaults-1s", defaults},
	} {
		b.Run(p.name, func(b *testing.B) {
			const rounds = 10
			c := newBenchCluster(b, p.cfg, false)
			for range 3 {
				c.start(true)
			}
			// A fake module: without reconcilers nothing loads it.
			module := []byte("\x00asm\x01\x00\x00\x00failover")
			var sha string
			for _, n := range c.nodes {
				sha = benchBlob(b, n.store, module)
			}
			spec := storage.Spec{SHA256: sha, Mode: storage.ModePooled}
			var writes, elections []time.Duration
			b.ResetTimer()
			for range rounds {
				l := c.waitStable(3)
				var survivors []*bnode
				for _, n := range c.nodes {
					if n != l {
						survivors = append(survivors, n)
					}
				}
				start := time.Now()
				c.kill(l)
				elected := make(chan time.Duration, 1)
				go func() {
					for time.Since(start) < time.Minute {
						for _, n := range survivors {
							if n.store.node.IsLeader() {
								elected <- time.Since(start)
								return
							}
						}
						time.Sleep(time.Millisecond) // polling interval
					}
					elected <- time.Minute
				}()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				for {
					_, err := survivors[0].store.Deploy(ctx, "failover", spec)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						cancel()
						b.Fatalf("no write acknowledged 30 s after the leader died: %v", err)
					}
				}
				cancel()
				writes = append(writes, time.Since(start))
				elections = append(elections, <-elected)
				c.restart(l)
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			reportPcts(b, "write-", writes, 0.5, 0.9)
			reportPcts(b, "elected-", elections, 0.5, 0.9)
		})
	}
}

// Membership: 50 gossip nodes on loopback, started apart; then 49 join the
// first at once, and the clock runs until every node sees 50 alive
// members (2,500 views), and until 99% of the views are there. Each round
// has fresh nodes and waits at most gossipCap: a join's alive message can
// die out before it reaches every node, and only the next push/pull
// repairs that (LAN: every 30 s, 60 s at 50 nodes), so a capped round
// reports the cap and counts as unconverged.
func BenchmarkClusterMembershipJoin(b *testing.B) {
	const rounds, nodes = 3, 50
	for _, profile := range []string{ProfileLocal, ProfileLAN} {
		b.Run(profile, func(b *testing.B) {
			var joined, most, all []time.Duration
			unconverged, missing := 0, 0
			for range rounds {
				r := gossipJoinRound(b, profile, nodes)
				joined, most, all = append(joined, r.joined), append(most, r.most), append(all, r.all)
				if r.missing > 0 {
					unconverged++
					missing += r.missing
				}
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(pct(joined, 0.5), "joins-returned-p50-s")
			reportPcts(b, "views99-", most, 0.5)
			reportPcts(b, "converged-", all, 0.5)
			b.ReportMetric(float64(unconverged), "capped-rounds")
			b.ReportMetric(float64(missing), "views-missing-at-cap")
		})
	}
}

// gossipCap bounds one membership round, so the benchmark stays under a
// minute even when LAN rounds wait for push/pull.
const gossipCap = 15 * time.Second

type gossipRound struct {
	joined, most, all time.Duration // joins returned; 99% of views alive; every view alive
	missing           int           // views not alive at the cap
}

// gossipJoinRound starts nodes memberships, joins all but the first to
// the first at once and times the convergence.
func gossipJoinRound(b *testing.B, profile string, nodes int) gossipRound {
	ms := make([]*Membership, 0, nodes)
	defer func() {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() { _ = m.Shutdown() })
		}
		wg.Wait()
	}()
	for i := range nodes {
		m, err := StartMembership(context.Background(), MembershipConfig{
			NodeName: fmt.Sprintf("bench-%02d", i),
			BindAddr: "127.0.0.1:0",
			Profile:  profile,
			Meta:     NodeMeta{Role: RoleServer, Region: "bench", Version: "v0.0.0-bench", RaftAddr: "127.0.0.1:7947", APIAddr: "127.0.0.1:8080"},
		})
		if err != nil {
			b.Fatal(err)
		}
		ms = append(ms, m)
	}
	seed := []string{ms[0].LocalAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), gossipCap)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for _, m := range ms[1:] {
		wg.Go(func() {
			if _, err := m.JoinNow(ctx, seed); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	r := gossipRound{joined: time.Since(start)}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d joins failed", n)
	}
	want := nodes * nodes
	for {
		views := 0
		for _, m := range ms {
			for _, mem := range m.Members() {
				if mem.Status == StatusAlive {
					views++
				}
			}
		}
		el := time.Since(start)
		if r.most == 0 && views*100 >= want*99 {
			r.most = el
		}
		if views == want || el > gossipCap {
			r.all, r.missing = el, want-views
			if r.most == 0 {
				r.most = el
			}
			return r
		}
		time.Sleep(10 * time.Millisecond) // polling interval; 50 member lists per poll
	}
}

// KV: linearizable writes (KVPut, acknowledged once committed by a
// majority) on the leader of 3 voters (TCP, fsync'd BoltDB logs), by N
// concurrent clients for a fixed time each. Target: >= 10,000 writes/s.
// cpu-us/write is the process's CPU time (three nodes and the clients)
// per write: with every node in one process on two cores, it bounds the
// rate more than the disk once Raft batches. cmds/entry is how many
// writes the leader's apply batcher put in one Raft entry, on average.
func BenchmarkClusterKVPut(b *testing.B) {
	c := newBenchCluster(b, FastConfig(), false)
	for range 3 {
		c.start(true)
	}
	l := c.waitStable(3)
	value := bytes.Repeat([]byte("v"), 100)
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			const runFor = 3 * time.Second
			lat := make([][]time.Duration, clients)
			errs := make([]error, clients)
			ctx := context.Background()
			entries0, cmds0 := l.store.node.kvMetrics.batches()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			start := time.Now()
			deadline := start.Add(runFor)
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					for k := 0; time.Now().Before(deadline); k++ {
						t := time.Now()
						if _, err := l.store.KVPut(ctx, "bench", fmt.Sprintf("c%d-%d", i, k%100), value, KVWriteOptions{}); err != nil {
							errs[i] = err
							return
						}
						lat[i] = append(lat[i], time.Since(t))
					}
				})
			}
			wg.Wait()
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
			entries1, cmds1 := l.store.node.kvMetrics.batches()
			b.StopTimer()
			if err := errors.Join(errs...); err != nil {
				b.Fatal(err)
			}
			all := slices.Concat(lat...)
			// The CPU of all three nodes and the clients per write.
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-us/write")
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
			b.ReportMetric(pct(all, 0.5)*1e3, "p50-ms")
			b.ReportMetric(pct(all, 0.99)*1e3, "p99-ms")
			b.ReportMetric(float64(cmds1-cmds0)/float64(max(entries1-entries0, 1)), "cmds/entry")
		})
	}
}

// KV: one client writing through a follower of 3 voters, one write at a
// time, for 2 s. The follower forwards each write to the leader and
// answers once it applied the write itself (read-your-writes on the node
// that took it); with no other writes flowing it learns the commit at
// the leader's next AppendEntries, which Config.CommitTimeout paces.
func BenchmarkClusterKVPutThroughFollower(b *testing.B) {
	for _, ct := range []time.Duration{DefaultCommitTimeout, 50 * time.Millisecond} {
		b.Run("commit_timeout="+ct.String(), func(b *testing.B) {
			cfg := FastConfig()
			cfg.CommitTimeout = ct
			_, f := newBenchCluster(b, cfg, false).threeVoters()
			value := bytes.Repeat([]byte("v"), 100)
			ctx := context.Background()
			var lat []time.Duration
			b.ResetTimer()
			deadline := time.Now().Add(2 * time.Second)
			for k := 0; time.Now().Before(deadline); k++ {
				t := time.Now()
				key := fmt.Sprintf("k%d", k%100)
				v, err := f.store.KVPut(ctx, "bench", key, value, KVWriteOptions{})
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
				if e, err := f.store.KVGet(ctx, "bench", key, ConsistencyLocal); err != nil || e.Version != v {
					b.Fatalf("the follower does not read its own write (version %d): %+v %v", v, e, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(len(lat))/2, "writes/s")
			b.ReportMetric(pct(lat, 0.5)*1e3, "p50-ms")
			b.ReportMetric(pct(lat, 0.99)*1e3, "p99-ms")
		})
	}
}

// KV: local reads from a guest. A pooled KV guest (the runtime's test
// guest) on a follower of 3 voters reads one key per request through the
// gojinn_kv_v1 host functions and HostKV, with as many concurrent callers
// as the pool has instances, for 3 s. reads/s counts whole invocations
// (one read each); direct-reads/s is HostKV.Get alone, the store's share.
func BenchmarkClusterKVGuestLocalReads(b *testing.B) {
	c := newBenchCluster(b, FastConfig(), false)
	l, f := c.threeVoters()
	ctx := context.Background()
	v, err := l.store.KVPut(ctx, "reader", "a", bytes.Repeat([]byte("v"), 100), KVWriteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for {
		if e, err := f.store.KVGet(ctx, "reader", "a", ConsistencyLocal); err == nil && e.Version == v {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cfg := runtime.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.CacheDir = filepath.Join(b.TempDir(), "cache")
	cfg.KV = NewHostKV(f.store)
	e, err := runtime.NewEngine(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	const workers = 4
	fn, err := e.Load(ctx, runtime.FunctionSpec{Name: "reader", Module: runtimetest.BuildGo(b, "runtime/testdata/guests/kv", true),
		Mode: runtime.ModePooled, Limits: runtime.Limits{MaxInstances: workers}})
	if err != nil {
		b.Fatal(err)
	}
	req := &protocol.Request{Method: "GET", URI: "/get?k=a", Path: "/get", RawQuery: "k=a", Host: "bench", Scheme: "https", Proto: "HTTP/1.1"}
	run := func(read func() error) (float64, time.Duration) {
		const runFor = 3 * time.Second
		var n atomic.Int64
		errs := make([]error, workers)
		cpu0 := cpuTime(b)
		start := time.Now()
		deadline := start.Add(runFor)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if err := read(); err != nil {
						errs[i] = err
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		return float64(n.Load()) / elapsed.Seconds(), cpu / time.Duration(max(n.Load(), 1))
	}
	b.ResetTimer()
	guest, guestCPU := run(func() error {
		res, err := fn.Invoke(ctx, req)
		if err == nil && res.Response.StatusOrDefault() != http.StatusOK {
			err = fmt.Errorf("get: %d %q", res.Response.StatusOrDefault(), res.Response.Body)
		}
		return err
	})
	hk := NewHostKV(f.store)
	direct, directCPU := run(func() error {
		_, _, err := hk.Get(ctx, "reader", "a", false)
		return err
	})
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(guest, "reads/s")
	b.ReportMetric(float64(guestCPU.Nanoseconds())/1e3, "cpu-us/read")
	b.ReportMetric(direct, "direct-reads/s")
	b.ReportMetric(float64(directCPU.Nanoseconds())/1e3, "direct-cpu-us/read")
}
