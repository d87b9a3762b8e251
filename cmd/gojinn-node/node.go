package main

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/guestlog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// node is one running gojinn-node: the pieces below, wired together.
// Start order: Raft store, runtime (its KV host functions use the store),
// reconciler (first pass loads every function), TLS, admin API, edge. Stop
// runs in reverse.
type node struct {
	cfg    Config
	log    *slog.Logger
	engine *runtime.Engine
	store  *cluster.Store
	agent  *cluster.Agent // nil without [cluster] enabled
	router *edge.Router
	rec    *cluster.Reconciler
	tls    *edge.TLS
	edge   *edge.Server
	admin  *http.Server
	adminL net.Listener

	metrics     *prometheus.Registry
	edgeMetrics *edge.Metrics
	tracing     *tracing // nil unless OTEL_* asks for trace export (otel.go)

	logs *guestlog.Buffer // guests' recent log lines, for `gojinn-node logs`

	token   string // set when created or in dev mode: printed once
	created bool

	stopRec context.CancelFunc
	wg      sync.WaitGroup
	adminCh chan error
	// stopping is set when shutdown begins: /readyz says 503 while the
	// edge still serves for edge.shutdown_delay.
	stopping atomic.Bool
}

// newLogger returns the node's JSON logger at level.
func newLogger(w io.Writer, cfg Config) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
	if name := cfg.nodeName(); name != "" {
		log = log.With("node", name)
	}
	return log
}

// startNode starts every piece; on error it stops what it started.
// firstJoinWait bounds how long a start waits for the cluster agent's
// first join round (Agent.FirstJoinChecked); joining goes on after it.
const firstJoinWait = 5 * time.Second

func startNode(ctx context.Context, cfg Config, log *slog.Logger, dev bool) (*node, error) {
	return startNodeSeeded(ctx, cfg, log, dev, nil)
}

// startNodeSeeded is startNode with a seed step that runs once the
// registry and the admin API work but before the edge opens, so the first
// request already finds what the seed deploys.
func startNodeSeeded(ctx context.Context, cfg Config, log *slog.Logger, dev bool, seed func(context.Context, *node) error) (_ *node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, log: log, router: &edge.Router{}, adminCh: make(chan error, 1)}
	defer func() {
		if err != nil {
			n.stop(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}

	// Guest log lines: kept per function for the logs endpoint (and the
	// other nodes' ?nodes=all) and written to the node's log.
	n.logs = guestlog.New(guestlog.Config{Logger: log})

	// 1. The registry: a Raft state machine, alone or in a cluster. It
	// comes before the runtime, whose KV host functions use it.
	cc := cluster.DefaultConfig()
	cc.DataDir = cfg.DataDir
	cc.RaftBind = cfg.Raft.Bind
	cc.RaftAdvertise = cfg.Raft.Advertise
	cc.Logger = log
	// Raft's timing follows the cluster profile: lan 500 ms (failover in
	// about 1 s), wan raft's 1 s defaults, local (and dev) 200 ms.
	var timing cluster.Config
	switch {
	case dev || cfg.Cluster.Enabled && cfg.Cluster.Profile == "local":
		timing = cluster.FastConfig()
	case cfg.Cluster.Enabled && cfg.Cluster.Profile == "lan":
		timing = cluster.LANConfig()
	default:
		timing = cluster.DefaultConfig()
	}
	cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout = timing.HeartbeatTimeout, timing.ElectionTimeout, timing.LeaderLeaseTimeout
	var blobs cluster.BlobReader
	if cfg.Cluster.Enabled {
		c := cfg.Cluster
		if c.JoinTokenFile != "" && c.JoinToken == "" {
			// A file keeps the token out of process listings and
			// container logs; a missing file is fine once enrolled.
			if b, err := os.ReadFile(c.JoinTokenFile); err == nil {
				c.JoinToken = strings.TrimSpace(string(b))
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("config key cluster.join_token_file: %w", err)
			}
		}
		n.agent, err = cluster.StartAgent(ctx, cluster.AgentConfig{
			Raft: cc, NodeName: cfg.nodeName(), NodeNameFromHost: cfg.nodeNameFromHost(), PeerListen: c.PeerListen, PeerAdvertise: c.PeerAdvertise,
			GossipBind: c.GossipBind, GossipAdvertise: c.GossipAdvertise, Profile: c.Profile,
			Join: c.Join, JoinToken: c.JoinToken, JoinRetryMax: c.JoinRetryMax, BootstrapExpect: c.BootstrapExpect, Region: c.Region, Version: version, GossipKey: c.GossipKey, GossipKeys: c.GossipKeys,
			Autopilot: cluster.AutopilotConfig{MaxVoters: c.MaxVoters, DeadServerTimeout: time.Duration(c.DeadServerTimeout)},
			Logs:      n.logs,
			Logger:    log,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		// A clash with another live node's identity (node_name in use, a
		// copied data directory) is found in the first join round: fail
		// the start with it rather than print the banner and then stop.
		select {
		case <-n.agent.FirstJoinChecked():
		case <-time.After(firstJoinWait):
		case <-ctx.Done():
		}
		select {
		case err := <-n.agent.Failed():
			return nil, fmt.Errorf("cluster: %w", err)
		default:
		}
		n.store = n.agent.Store()
		blobs = n.agent.BlobReader(cfg.Admin.MaxModuleBytes)
		if tok := n.agent.JoinTokenCreated; tok != "" && c.JoinTokenFile != "" {
			// The bootstrap node hands the token over through the file
			// (a volume shared with the next nodes, say).
			// WriteFile keeps the mode of a file that exists: 0600
			// whatever it was.
			err := os.WriteFile(c.JoinTokenFile, []byte(tok+"\n"), 0o600)
			if err == nil {
				err = os.Chmod(c.JoinTokenFile, 0o600)
			}
			if err != nil {
				return nil, fmt.Errorf("config key cluster.join_token_file: write the new join token: %w", err)
			}
		}
	} else {
		if err := cluster.CheckStandaloneDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
		openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n.store, err = cluster.OpenStore(openCtx, cc)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		blobs = n.store.Blobs()
	}

	// 2. The runtime, with its compilation cache in the data directory
	// and the registry's KV behind the guests' gojinn_kv_v1 functions.
	rc := runtime.DefaultConfig()
	rc.CacheDir = filepath.Join(cfg.DataDir, "compilecache")
	rc.Logger = log
	rc.MaxModuleBytes = int(cfg.Admin.MaxModuleBytes)
	rc.CompiledIdleTimeout = time.Duration(cfg.Runtime.CompiledIdleTimeout)
	rc.PoolIdleTimeout = time.Duration(cfg.Runtime.PoolIdleTimeout)
	rc.MaxConcurrentCompiles = cfg.Runtime.MaxConcurrentCompiles
	rc.KV = cluster.NewHostKV(n.store)
	rc.Logs, rc.LogRate, rc.LogBurst = n.logs, float64(cfg.Runtime.LogRate), cfg.Runtime.LogBurst
	rc.MaxGuestMemory = cfg.Runtime.MaxGuestMemory
	// The node's Prometheus registry, served on the admin listener below.
	n.metrics = prometheus.NewRegistry()
	if rc.Metrics, err = runtime.NewMetrics(n.metrics); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if n.engine, err = runtime.NewEngine(ctx, rc); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}

	// 3. Serve what the registry holds before any listener opens, unless
	// that takes longer than startLoadWait (modules to compile afresh: a
	// cold compilation cache, a new wazero version). Then the listeners
	// open anyway, so that /healthz answers (a liveness probe must not
	// kill a node that is compiling) and what is loaded serves; the rest
	// answers 503 with Retry-After, and /readyz says "loading functions",
	// until it is loaded.
	n.rec = cluster.NewReconciler(n.store, blobs, n.engine, n.router, log)
	if n.agent != nil {
		n.agent.SetReconciler(n.rec)
	}
	recCtx, stopRec := context.WithCancel(context.WithoutCancel(ctx))
	n.stopRec = stopRec
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.rec.Run(recCtx)
	}()
	select {
	case <-n.rec.FirstPass():
	case <-time.After(startLoadWait):
		log.Warn("still loading functions; opening the listeners: functions not loaded yet answer 503 with Retry-After, and /readyz says not ready, until they are", "waited", startLoadWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	// 4. The admin token: created at first start, stored hashed.
	var hash [32]byte
	n.token, hash, n.created, err = cluster.LoadOrCreateToken(cfg.DataDir, dev)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}

	// 5. TLS.
	if cfg.Edge.HTTPS != "" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		if n.tls, err = edge.NewTLS(ctx, tc, n.hostAllowed, log.With("component", "tls")); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}

	// 6. The admin API on its own listener.
	apiCfg := cluster.APIConfig{
		Registry: n.store, Blobs: n.store.Blobs(), TokenHash: hash,
		MaxModuleBytes: cfg.Admin.MaxModuleBytes,
		Check:          n.rec.CheckDeploy,
		WaitReady:      n.rec.WaitReady,
		WaitRemoved:    n.rec.WaitRemoved,
		Ready:          n.ready,
		Logger:         log.With("component", "api"),
		Version:        version,
		Logs:           n.logs,
		NodeID:         n.store.Node().ID(),
		NodeName:       cfg.nodeName(),
		RaftAddr:       n.store.Node().Addr(),
	}
	if n.agent != nil {
		// A deploy is servable when every live node serves it.
		apiCfg.WaitReady = n.agent.WaitServable
		apiCfg.Members = n.agent.MemberInfos
		apiCfg.ForceLeave = n.agent.ForceLeave
		apiCfg.PeerLogs = n.agent.PeerLogs
	}
	api, err := cluster.NewAPI(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	// Metrics on the admin listener, behind the same token: series
	// name functions, which is more than strangers need to know.
	n.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		cluster.NewCollector(n.store.Node(), n.agent, n.engine),
	)
	n.metrics.MustRegister(nodeGauges(n)...)
	if n.edgeMetrics, err = edge.NewMetrics(n.metrics); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.pruneMetrics(recCtx)
	}()
	adminMux := http.NewServeMux()
	adminMux.Handle("/metrics", requireToken(hash, promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})))
	adminMux.Handle("/", api)
	if n.adminL, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		return nil, fmt.Errorf("admin api: listen on %s (config key admin.listen): %w", cfg.Admin.Listen, err)
	}
	if where := adminExposure(n.adminL.Addr()); where != "" {
		log.Warn("the admin API serves plain HTTP on "+where+": the admin token and deployed env values cross the network unencrypted; listen on loopback or a private address (admin.listen), or put it behind a TLS proxy or VPN",
			"addr", n.adminL.Addr().String())
	}
	n.admin = &http.Server{
		// Deploys stream modules up to admin.max_module_bytes and may wait
		// up to 10 minutes for readiness, so reads and writes get room.
		Handler: adminMux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Minute,
		WriteTimeout: 11 * time.Minute, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	n.admin.RegisterOnShutdown(n.logs.Close) // log followers end, so shutdown need not wait for them
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.admin.Serve(n.adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.adminCh <- err
		}
	}()

	if seed != nil {
		if err := seed(ctx, n); err != nil {
			return nil, err
		}
	}

	// 7. The edge.
	sc := edge.ServerConfig{
		HTTPSAddr: cfg.Edge.HTTPS, HTTPAddr: cfg.Edge.HTTP, Plain: edge.PlainMode(cfg.Edge.HTTPMode),
		DisableHTTP3:   !cfg.Edge.HTTP3,
		MaxHeaderBytes: cfg.Edge.MaxHeaderBytes, ReadHeaderTimeout: time.Duration(cfg.Edge.ReadHeaderTimeout),
		ReadTimeout: time.Duration(cfg.Edge.ReadTimeout), WriteTimeout: time.Duration(cfg.Edge.WriteTimeout),
		IdleTimeout: time.Duration(cfg.Edge.IdleTimeout), MaxConns: cfg.Edge.MaxConns,
		MaxConcurrentStreams: cfg.Edge.MaxConcurrentStreams, ShutdownGrace: time.Duration(cfg.Edge.ShutdownGrace),
		// Calls still running when the grace period ends are stopped
		// and answered 503, not cut off with their connections.
		OnGraceEnd: n.engine.StopCalls,
		Logger:     log.With("component", "edge"),
	}
	if n.tls != nil {
		sc.TCPTLS, sc.QUICTLS, sc.PlainWrap = n.tls.TCPConfig(), n.tls.QUICConfig(), n.tls.HTTPChallengeHandler
		// Handshake counts and certificate expiry on /metrics.
		sc.Metrics = n.edgeMetrics
		n.edgeMetrics.ReportCertificates(n.tls)
	}
	h := &edge.Handler{Invoker: n.engine, Router: n.router, MaxBody: cfg.Edge.MaxBodyBytes, MaxBodyMemory: cfg.Edge.MaxBodyMemory, Dev: cfg.Edge.DevErrors, Logger: log, Metrics: n.edgeMetrics, AccessLog: cfg.Edge.AccessLog, FunctionLogs: n.logs}
	n.tracing = startTracing(ctx, log, h)
	if n.edge, err = edge.NewServer(sc, h); err != nil {
		return nil, err
	}
	if n.tls != nil && len(cfg.TLS.Names) > 0 {
		// Obtained in the background, each name on its own and retried
		// with backoff (a CA outage at start, or one name the CA
		// refuses, must not leave the others without certificates for
		// good); the HTTP-01 and TLS-ALPN-01 solvers need the listeners
		// that just opened.
		if err := n.tls.ManageAsync(cfg.TLS.Names); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// startLoadWait bounds how long a start waits for the functions to load
// before it opens the listeners anyway.
var startLoadWait = 15 * time.Second

// nodeGauges are the node's gauges read at scrape time from its engine
// and reconciler (the dashboard test describes them on a zero node).
func nodeGauges(n *node) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gojinn_guest_memory_bytes",
			Help: "Linear memory all guest instances hold now, in bytes."},
			func() float64 { used, _ := n.engine.GuestMemory(); return float64(used) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gojinn_guest_memory_limit_bytes",
			Help: "The bound on the linear memory of all guest instances (runtime.max_guest_memory); 0 for none."},
			func() float64 { _, limit := n.engine.GuestMemory(); return float64(limit) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gojinn_functions_failed",
			Help: "Functions whose active version this node could not load (the log says why; retried while the cause may pass)."},
			func() float64 { return float64(n.rec.Failing()) }),
	}
}

// requireToken guards next with the admin token (compared by hash in
// constant time), as the admin API does for /v1/.
func requireToken(hash [32]byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := cluster.HashToken(tok)
		if !ok || subtle.ConstantTimeCompare(got[:], hash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gojinn"`)
			http.Error(w, "metrics need the admin token: Authorization: Bearer <token> (Prometheus: authorization.credentials)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tlsConfig maps the [tls] table to the edge's TLS configuration.
func tlsConfig(cfg Config) (edge.TLSConfig, error) {
	tc, err := cfg.edgeTLS()
	if err != nil {
		return tc, err
	}
	if tc.Mode == edge.TLSModeACME {
		// Names are obtained by ManageAsync once the listeners are open:
		// started earlier, CertMagic's solvers could bind :80 or :443
		// before the edge does.
		tc.Names = nil
		// Challenges arrive on the edge's own listeners, whatever their
		// ports (a node that is not root listens on 8080 and 8443 behind
		// a port forward): CertMagic, finding the port held, leaves the
		// answer to them instead of binding :80 or :443 itself.
		tc.ACMEHTTPPort, tc.ACMETLSPort = listenPort(cfg.Edge.HTTP), listenPort(cfg.Edge.HTTPS)
	}
	return tc, nil
}

// edgeTLS builds and validates the edge's TLS settings from the [tls]
// table: every key, whatever the mode, so that one the mode does not use
// is refused by name rather than ignored (edge.TLSConfig.Validate knows
// which keys each mode uses), and the names are checked for the mode (no
// wildcard for acme without on-demand, no URL). Config.Validate
// calls it, so a bad setting stops the node before it writes anything.
func (c Config) edgeTLS() (edge.TLSConfig, error) {
	t := c.TLS
	tc := edge.TLSConfig{
		Mode: edge.TLSMode(t.Mode), DataDir: c.DataDir, Names: t.Names,
		Email: t.Email, CA: t.CA, OnDemand: t.OnDemand,
		DisableHTTPChallenge: t.DisableHTTPChallenge, DisableTLSALPNChallenge: t.DisableTLSALPNChallenge,
		CertFile: t.CertFile, KeyFile: t.KeyFile,
	}
	if t.CARoot != "" {
		// Validate refuses a root outside mode acme by its key, before
		// the file is read.
		tc.CARoots = x509.NewCertPool()
		if err := tc.Validate(); err != nil {
			return tc, fmt.Errorf("config key %w", err)
		}
		pem, err := os.ReadFile(t.CARoot)
		if err != nil {
			return tc, fmt.Errorf("config key tls.ca_root: %w", err)
		}
		if !tc.CARoots.AppendCertsFromPEM(pem) {
			return tc, fmt.Errorf("config key tls.ca_root: %s holds no PEM certificate", t.CARoot)
		}
	}
	if err := tc.Validate(); err != nil {
		return tc, fmt.Errorf("config key %w", err)
	}
	if tc.Mode == edge.TLSModeInternal && tc.DataDir != "" {
		// A damaged CA stops the node here, before Raft and the
		// functions start, not after.
		if err := edge.CheckInternalCA(tc.DataDir); err != nil {
			return tc, fmt.Errorf("config key tls.mode (internal): %w", err)
		}
	}
	if tc.Mode == edge.TLSModeFiles {
		// Read now, so that a wrong path stops the node before it writes
		// anything (the edge reads the pair again at start, and on
		// change).
		if err := edge.CheckTLSFiles(tc.CertFile, tc.KeyFile); err != nil {
			return tc, fmt.Errorf("config key %w", err)
		}
	}
	return tc, nil
}

// hostAllowed says whether some route names host, for on-demand TLS: a
// route for any host does not count, so strangers cannot make the node
// order certificates for names it does not serve. Names under a wildcard
// route (*.example.com) count only with tls.on_demand_wildcards: any
// client can invent them, and each costs an order at the CA (the edge
// rate-limits new names either way).
func (n *node) hostAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, r := range n.router.Load().Routes() {
		p := strings.ToLower(r.Host)
		switch {
		case p == "" || p == "*":
		case strings.HasPrefix(p, "*."):
			if n.cfg.TLS.OnDemandWildcards && strings.HasSuffix(host, p[1:]) && len(host) > len(p)-1 {
				return true
			}
		case p == host:
			return true
		}
	}
	return false
}

// stop shuts the node down in reverse start order; every step is bounded.
func (n *node) stop(ctx context.Context) {
	// 1. The edge: stop accepting, drain in-flight requests.
	if n.edge != nil {
		if err := n.edge.Shutdown(ctx); err != nil {
			n.log.Warn("edge shutdown", "err", err)
		}
	}
	// 2. The admin API.
	if n.admin != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := n.admin.Shutdown(sctx); err != nil {
			// A deploy still waiting for readiness: cut it off.
			n.log.Warn("admin api shutdown", "err", err)
			_ = n.admin.Close()
		}
		cancel()
	} else if n.adminL != nil {
		_ = n.adminL.Close()
	}
	// 3. Background work: the reconciler and certificate management.
	if n.stopRec != nil {
		n.stopRec()
	}
	if n.tls != nil {
		_ = n.tls.Close()
	}
	n.wg.Wait()
	// 4. The runtime: nothing invokes it any more, and no guest is left
	// to call the KV.
	if n.engine != nil {
		if err := n.engine.Close(ctx); err != nil {
			n.log.Warn("runtime shutdown", "err", err)
		}
	}
	// 5. Raft (and in a cluster: gossip, the peer API, the autopilot),
	// after the API and the runtime, so no write is proposed into a
	// closed node.
	switch {
	case n.agent != nil:
		if n.cfg.Cluster.LeaveOnShutdown {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := n.agent.Leave(lctx); err != nil {
				n.log.Warn("leaving the cluster", "err", err)
			}
			cancel()
		}
		n.agent.Close()
	case n.store != nil:
		if err := n.store.Close(); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
	}
	n.tracing.shutdown(ctx) // 6. Trace export: flush the spans of everything above.
}

// metricsSweep is how often pruneMetrics runs without a registry change.
const metricsSweep = time.Minute

// pruneMetrics deletes the edge's and the runtime's series of functions
// the registry no longer has, after every registry change and every
// metricsSweep, until ctx ends. A removal alone is not enough: a request
// still running when its function was removed, or the check of a deploy
// the node refused, counts under the name afterwards.
func (n *node) pruneMetrics(ctx context.Context) {
	changed, unsubscribe := n.store.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(metricsSweep)
	defer tick.Stop()
	// Reads the registry at every call: a deploy committed but not yet
	// loaded is in it, so its series stay.
	keep := func(name string) bool {
		_, ok := n.store.Function(name)
		return ok
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		n.edgeMetrics.Prune(keep)
		n.engine.PruneMetrics(keep)
	}
}

// ready is the admin API's readiness: not ready once shutdown has begun
// (edge.shutdown_delay), else the reconciler's.
func (n *node) ready() (bool, string) {
	if n.stopping.Load() {
		return false, "shutting down"
	}
	return n.rec.Ready()
}

// adminExposure says where a plain-HTTP admin listener at addr may be
// reached from beyond this machine and a private network: "every
// interface" for an unspecified address, "a public address" for one that
// is neither loopback, private nor link-local; "" otherwise.
func adminExposure(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return ""
	}
	switch ip := ta.IP; {
	case ip.IsUnspecified():
		return "every interface"
	case ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast():
		return ""
	}
	return "a public address"
}

// listenPort is the port of a listen address, or 0 for none or an
// unparsable one (CertMagic's default then applies).
func listenPort(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	return n
}
