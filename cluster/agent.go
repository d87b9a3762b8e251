package cluster

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AgentConfig configures a clustered node: its Raft server, peer API,
// gossip membership and security material.
type AgentConfig struct {
	// Raft is the Raft node's configuration (DataDir, RaftBind,
	// RaftAdvertise, timeouts). FSM and Transport are set by the agent.
	Raft Config
	// PeerListen is the peer API's host:port (mutual TLS; joiners enroll
	// here). Required.
	PeerListen string
	// PeerAdvertise is the host:port other nodes dial for the peer API.
	// Default: PeerListen's bound address, or when it listens on every
	// address, the host Raft advertises with PeerListen's port.
	PeerAdvertise string
	// GossipBind and GossipAdvertise are memberlist's addresses.
	GossipBind, GossipAdvertise string
	// Profile is the gossip timing profile: lan, wan or local.
	Profile string
	// Join lists seed nodes' peer API addresses (host:port). Empty on the
	// node that bootstraps the cluster.
	Join []string
	// BootstrapExpect, on the node that bootstraps, delays the first
	// election until this many servers (itself included) asked to join;
	// they all start as voters. A restart before then waits again (the
	// joins are asked anew). 0 or 1: bootstrap alone at once. Ignored on
	// a node that enrolled.
	BootstrapExpect int
	// JoinRetryMax bounds enrollment rounds over the seeds (with
	// exponential backoff up to 30 s); 0 retries until the start context
	// ends. A refused token is never retried.
	JoinRetryMax int
	// JoinToken is the token printed by the bootstrap node; needed the
	// first time a node joins (later starts use the stored identity).
	JoinToken string
	// GossipKey and GossipKeys, base64, make up the gossip keyring:
	// GossipKey (when set) then GossipKeys, the first being the key
	// gossip encrypts with; every key decrypts. When both are empty the
	// keyring kept in the data directory is used (created at bootstrap,
	// handed over at enrollment). Enrollment hands joiners the whole
	// keyring. Rotate a key with three rolling restarts: [old, new],
	// [new, old], [new] (docs/operations.md).
	GossipKey  string
	GossipKeys []string
	// NodeName is the node's configured name (gojinn-node's node_name),
	// announced by gossip and shown in `members`. It must be unique among
	// the live members: a node that finds a live member using its name
	// stops (Failed), unless NodeNameFromHost. Empty: none is announced
	// or checked.
	NodeName string
	// NodeNameFromHost says NodeName was not configured but is the host
	// name: it is announced and shown, never checked, since distinct
	// machines may share a host name (cloned images, several nodes on
	// one host).
	NodeNameFromHost bool
	// Region tags the node in `members`.
	Region string
	// Version is the node's build version, shown in `members`.
	Version string
	// Autopilot manages voters.
	Autopilot AutopilotConfig
	// DeadMemberReapTime is how long `members` lists a member after gossip
	// declared it dead; LeftMemberReapTime, after it left gracefully.
	// Defaults DefaultDeadMemberReapTime (24 h) and
	// DefaultLeftMemberReapTime (5 min).
	DeadMemberReapTime, LeftMemberReapTime time.Duration
	// Logs holds this node's guest log lines, which other nodes fetch for
	// GET /v1/functions/{name}/logs?nodes=all; nil: this node has none.
	Logs LogSource
	// Logger receives cluster events.
	Logger *slog.Logger
}

// Agent is a node's cluster side: the Raft store with write forwarding,
// the peer API (mutual TLS), membership by gossip, voter management and
// the enrollment of new nodes (on the node holding the cluster CA).
//
// Goroutines: the peer API server, the membership event loop (which also
// keeps DATA/cluster/peers), the identity watcher, the blob sync, the
// autopilot and, on a node with seeds (cluster.join or the peers file),
// the join loop; all stop in Close. Locks: identityMu (identity checks)
// and expectMu are never held together.
type Agent struct {
	cfg      AgentConfig
	log      *slog.Logger
	store    *Store
	identity *NodeIdentity
	members  *Membership
	peers    *StaticPeers
	known    *knownPeers // DATA/cluster/peers; owned by watchMembers once started
	client   *PeerClient
	peerLn   net.Listener
	peerSrv  *http.Server
	peerURL  string
	rec      atomic.Pointer[Reconciler]
	// gossipAddr is members' local address, for the peer API's Info,
	// which serves before gossip starts.
	gossipAddr atomic.Pointer[string]
	enrolls    bool  // holds the CA and the join secret's hash; set before StartAgent returns
	started    int64 // Unix milliseconds, announced as NodeMeta.Started

	// Identity clashes (gossip_identity.go): the clashes checked lately,
	// and the error this node stopped with.
	identityMu sync.Mutex
	clashSeen  map[string]time.Time
	// raftSilenceWarned is when warnRaftSilence last warned (heal's
	// goroutine only).
	raftSilenceWarned time.Time
	failOnce          sync.Once
	failed            chan error
	// firstJoin is closed once the first join round checked this node's
	// identity (at once without seeds); firstJoinOnce closes it.
	firstJoin     chan struct{}
	firstJoinOnce sync.Once

	gossipKeys [][]byte // the keyring gossip uses, primary first

	// bootstrap-expect: servers that asked to join before the first
	// election, until expect is reached.
	expectMu sync.Mutex
	expect   int
	pending  map[string]ServerInfo

	// JoinTokenCreated is the join token when this start bootstrapped
	// the cluster (print it once), else empty.
	JoinTokenCreated string

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// StartAgent starts the cluster side of a node. A new data directory
// without Join bootstraps a new cluster (creating its CA, gossip key and a
// join token); with Join and JoinToken it enrolls at a seed, then asks the
// leader to add it. A node that enrolled never bootstraps: until it has
// Raft state, every start asks its seeds to add it. A data directory with
// state restarts and rejoins by itself, also on new addresses.
//
// Its errors do not start with "cluster: ": the caller names the part that
// failed (gojinn-node writes "cluster: " before them), so the package's
// name would read twice.
func StartAgent(ctx context.Context, cfg AgentConfig) (_ *Agent, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PeerListen == "" {
		return nil, errors.New("AgentConfig.PeerListen is required")
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("component", "cluster"), peers: &StaticPeers{},
		started: time.Now().UnixMilli(), clashSeen: map[string]time.Time{}, failed: make(chan error, 1), firstJoin: make(chan struct{}),
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	dir := ClusterDir(cfg.Raft.DataDir)
	if err := os.MkdirAll(cfg.Raft.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkDataDirIntact(cfg.Raft.DataDir, cfg.Raft.NodeID); err != nil {
		return nil, err
	}
	id, err := loadOrCreateNodeID(cfg.Raft.DataDir, cfg.Raft.NodeID)
	if err != nil {
		return nil, err
	}
	nodeID := string(id)

	// 1. Identity: stored, enrolled at a seed, or bootstrapped.
	gossipKeys, err := a.identityFor(ctx, dir, nodeID)
	if err != nil {
		return nil, err
	}
	// Only the node that created the cluster may start a Raft cluster; a
	// node that enrolled waits for the leader to add it, on every start
	// until it has Raft state (not only the start that enrolled it).
	boot, err := mayBootstrap(dir)
	if err != nil {
		return nil, err
	}
	if cfg.GossipKey != "" || len(cfg.GossipKeys) > 0 {
		stored := gossipKeys
		if gossipKeys, err = ParseGossipKeyring(cfg.GossipKey, cfg.GossipKeys); err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		// The data directory keeps the keyring the node last ran with, so
		// dropping the keys from the configuration later does not bring
		// back a stale one.
		if !sameKeyring(stored, gossipKeys) {
			if err := writeGossipKeyring(dir, gossipKeys); err != nil {
				return nil, err
			}
		}
	}
	a.gossipKeys = gossipKeys // what gossip uses and enrollment hands to joiners
	if a.known, err = loadKnownPeers(dir, nodeID); err != nil {
		a.log.Warn("starting without the last-known peers", "err", err)
	}

	// 2. The peer API listener, so the advertised address is known.
	if a.peerLn, err = net.Listen("tcp", cfg.PeerListen); err != nil {
		return nil, fmt.Errorf("peer API listen on %s: %w", cfg.PeerListen, err)
	}
	adv := cfg.PeerAdvertise
	if adv == "" {
		if adv, err = peerAdvertise(a.peerLn.Addr().String(), cfg.Raft.withDefaults()); err != nil {
			_ = a.peerLn.Close()
			return nil, err
		}
	}
	a.peerURL = "https://" + adv

	// 3. Raft over mutual TLS.
	rc := cfg.Raft
	// Join only matters while there is no Raft state. A new cluster with
	// BootstrapExpect waits for its voters before its first election, on
	// a restart during that wait too.
	rc.Join = !boot || cfg.BootstrapExpect > 1
	rc.Logger = cfg.Logger
	addrs := &raftAddrBook{}
	trans, err := newTLSTransport(rc.withDefaults().RaftBind, rc.RaftAdvertise, a.identity, newHCLog(cfg.Logger, "raft-net", 0), addrs)
	if err != nil {
		return nil, err
	}
	rc.Transport = trans
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	a.store, err = OpenStore(openCtx, rc)
	cancel()
	if err != nil {
		_ = trans.Close()
		return nil, err
	}
	if boot && cfg.BootstrapExpect > 1 && a.store.node.startedEmpty {
		// Before the peer API serves, so no join request finds it unset.
		a.expect, a.pending = cfg.BootstrapExpect, map[string]ServerInfo{}
	}
	a.client = &PeerClient{HTTP: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: a.identity.ClientTLS(), TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 4,
	}}}
	a.store.EnableForwarding(a.client, a.peers)
	a.peers.Set(nodeID, a.peerURL)

	// 4. The peer API, with enrollment where the CA key lives.
	if err := a.servePeerAPI(dir); err != nil {
		return nil, err
	}

	// 5. Gossip membership; members' peer URLs feed the resolver.
	a.members, err = StartMembership(ctx, MembershipConfig{
		NameUnchecked: cfg.NodeNameFromHost,
		NodeName:      nodeID, BindAddr: cfg.GossipBind, AdvertiseAddr: cfg.GossipAdvertise, Profile: cfg.Profile,
		SecretKey: primaryKey(gossipKeys), SecretKeys: secondaryKeys(gossipKeys),
		Meta: NodeMeta{Role: RoleServer, Region: cfg.Region, Version: cfg.Version, RaftAddr: a.store.node.Addr(), APIAddr: adv,
			Name: cfg.NodeName, Started: a.started},
		DeadMemberReapTime: cfg.DeadMemberReapTime, LeftMemberReapTime: cfg.LeftMemberReapTime,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	addrs.setLookup(a.members.RaftAddr)
	gossipAddr := a.members.LocalAddr()
	a.gossipAddr.Store(&gossipAddr)
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.watchMembers(bg) }()
	go func() { defer a.wg.Done(); a.watchIdentity(bg) }()

	// 6. Join: gossip through the seeds, Raft through the leader. The
	// seeds are cluster.join and the members last seen (DATA/cluster/peers),
	// so a restart finds the cluster without cluster.join (the bootstrap
	// node) and after addresses changed.
	seeds := a.joinSeeds()
	if len(seeds) > 0 {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.joinLoop(bg, seeds) }()
	} else {
		a.firstJoinDone()
	}
	if len(seeds) == 0 && !boot && a.store.node.startedEmpty {
		a.log.Warn("this node enrolled into a cluster but has no Raft state and knows no member to ask to add it: "+
			"it waits until a member reaches it by gossip; set cluster.join to a member's peer API address",
			"peer_addr", a.PeerAddr())
	}

	// 7. Every live version's module, not only active ones, so a rollback
	// works on this node even if the node that had it is gone.
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.syncBlobs(bg) }()

	// 8. Voter management, acting only while this node leads.
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.store.node.RunAutopilot(bg, cfg.Autopilot) }()
	return a, nil
}

// checkTokenCluster refuses a join token of another cluster than the one
// this data directory belongs to: a directory that already holds a
// cluster identity never enrolls again, so the token (and cluster.join)
// would be ignored without a word, and the node would run in its old
// cluster, alone or stuck as a candidate, instead of the one the operator
// meant.
func (a *Agent) checkTokenCluster(dir string, id *NodeIdentity) error {
	if a.cfg.JoinToken == "" {
		return nil
	}
	t, err := ParseJoinToken(a.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("cluster.join_token: %w", err)
	}
	mine := sha256.Sum256(id.CACert().Raw)
	if t.CAFingerprint != mine {
		return fmt.Errorf("the data directory %s belongs to the cluster with CA sha256:%s…, but cluster.join_token is for the cluster with CA sha256:%s…: to join that cluster, start with an empty data directory; to run in this one, remove cluster.join_token (a member never needs it again)",
			dir, hex.EncodeToString(mine[:8]), hex.EncodeToString(t.CAFingerprint[:8]))
	}
	return nil
}

// identityFor loads or creates this node's TLS identity and gossip key.
func (a *Agent) identityFor(ctx context.Context, dir, nodeID string) (gossipKeys [][]byte, err error) {
	if id, err := LoadNodeIdentity(dir); err == nil {
		a.identity = id
		if err := a.checkTokenCluster(dir, id); err != nil {
			return nil, err
		}
		// A bootstrap whose start failed before the banner showed its
		// join token shows it now.
		if hash, err := LoadJoinSecretHash(dir); err == nil {
			if tok, ok := readUnshown(filepath.Join(dir, joinTokenUnshownFile), func(s string) bool {
				t, err := ParseJoinToken(s)
				return err == nil && t.SecretHash() == hash && t.CAFingerprint == sha256.Sum256(id.CACert().Raw)
			}); ok {
				a.JoinTokenCreated = tok
			}
		}
		ring, err := readGossipKeyring(dir)
		return ring, err
	}
	if len(a.cfg.Join) == 0 {
		if enrolled, err := hasEnrolled(dir); err != nil {
			return nil, err
		} else if enrolled {
			return nil, errEnrolledNoIdentity
		}
		// Bootstrap: a new cluster CA, this node's certificate, a gossip
		// key and a join token for the next nodes.
		ca, id, err := BootstrapIdentity(dir, nodeID, nil, nil)
		if err != nil {
			return nil, err
		}
		a.identity = id
		key, err := GenerateGossipKey()
		if err != nil {
			return nil, err
		}
		raw, _ := ParseGossipKey(key)
		if err := writeGossipKeyring(dir, [][]byte{raw}); err != nil {
			return nil, err
		}
		tok, hash := NewJoinToken(ca)
		// The token waits unshown until the banner shows it (token.go).
		if err := writeSecretFile(filepath.Join(dir, joinTokenUnshownFile), []byte(tok.Encode()+"\n")); err != nil {
			return nil, err
		}
		if err := SaveJoinSecretHash(dir, hash); err != nil {
			return nil, err
		}
		a.JoinTokenCreated = tok.Encode()
		a.log.Info("bootstrapped a new cluster: certificate authority, gossip key and join token created")
		return [][]byte{raw}, nil
	}
	if a.cfg.JoinToken == "" {
		return nil, errors.New("joining needs a join token (printed by the node that bootstrapped the cluster; set cluster.join_token or cluster.join_token_file)")
	}
	tok, err := ParseJoinToken(a.cfg.JoinToken)
	if err != nil {
		return nil, err
	}
	key, err := LoadOrCreateNodeKey(dir)
	if err != nil {
		return nil, err
	}
	resp, seed, err := a.enroll(ctx, tok, key, nodeID)
	if err != nil {
		return nil, err
	}
	// The mark goes first: a crash between the two files leaves a node
	// that enrolls again, never one that has a certificate and may
	// bootstrap.
	if err := markEnrolled(dir, seed); err != nil {
		return nil, err
	}
	if err := SaveNodeCert(dir, resp.NodeCert, resp.CACert); err != nil {
		return nil, err
	}
	ring := resp.Keyring()
	if len(ring) > 0 {
		if err := writeGossipKeyring(dir, ring); err != nil {
			return nil, err
		}
	}
	if a.identity, err = LoadNodeIdentity(dir); err != nil {
		return nil, err
	}
	a.log.Info("enrolled in the cluster", "seed", seed, "gossip_keys", keyringFingerprints(ring))
	return ring, nil
}

// enrolledFileName, in DATA/cluster, marks a node that enrolled into an
// existing cluster. It is written before the node's certificate and never
// removed: such a node must never start a Raft cluster of its own, also
// when it stopped before the leader added it or lost its Raft state
// later, and even if an operator copied the cluster CA to it.
const enrolledFileName = "enrolled"

// errEnrolledNoIdentity refuses to bootstrap a data directory that
// enrolled into a cluster but holds no certificate (a crash between the
// mark and the certificate, or deleted files).
var errEnrolledNoIdentity = errors.New("this data directory enrolled into an existing cluster (DATA/cluster/" + enrolledFileName +
	") but holds no node certificate, so it cannot bootstrap a new one: set cluster.join and a join token to enroll again, or start a new cluster in an empty data directory")

// markEnrolled records that this node enrolled at seed.
func markEnrolled(dir, seed string) error {
	msg := fmt.Sprintf("enrolled at %s on %s; this node joins an existing cluster and never bootstraps one\n", seed, time.Now().UTC().Format(time.RFC3339))
	return writeSecretFile(filepath.Join(dir, enrolledFileName), []byte(msg))
}

// hasEnrolled reports whether this node enrolled into a cluster.
func hasEnrolled(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, enrolledFileName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("check whether this node enrolled: %w", err)
}

// mayBootstrap reports whether this node may start a new Raft cluster
// when its data directory has no Raft state: only the node that created
// the cluster here. It holds the CA key (created before its certificate)
// and never enrolled. The CA key alone is not enough, since an operator
// may copy it to a voter ("Replacing a dead node"); the mark alone misses
// nodes that enrolled before the mark existed. Either way, a node that
// enrolled waits to be added by the leader.
func mayBootstrap(dir string) (bool, error) {
	if enrolled, err := hasEnrolled(dir); err != nil || enrolled {
		return false, err
	}
	_, err := os.Stat(filepath.Join(dir, ClusterCADirName, caKeyFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("check for the cluster CA key: %w", err)
}

// enroll asks each seed in turn for a certificate, retrying with backoff
// while seeds are unreachable (they may start later) until JoinRetryMax
// rounds or ctx ends. A refused token ends it at once: retrying cannot
// fix it.
func (a *Agent) enroll(ctx context.Context, tok JoinToken, key crypto.Signer, nodeID string) (*JoinResponse, string, error) {
	backoff := 500 * time.Millisecond
	for round := 1; ; round++ {
		var errs []error
		for _, seed := range a.cfg.Join {
			jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			resp, err := RequestJoin(jctx, seed, tok, key, nodeID)
			cancel()
			if err == nil {
				return resp, seed, nil
			}
			if errors.Is(err, ErrJoinRefused) || errors.Is(err, ErrSeedNotTrusted) || errors.Is(err, ErrInvalidJoinToken) {
				return nil, "", fmt.Errorf("seed %s refused this node: %w", seed, err)
			}
			errs = append(errs, err)
		}
		err := fmt.Errorf("no seed enrolled this node (list the bootstrap node among cluster.join): %w", errors.Join(errs...))
		if a.cfg.JoinRetryMax > 0 && round >= a.cfg.JoinRetryMax {
			return nil, "", err
		}
		a.log.Warn("enrollment failed; retrying", "round", round, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (a *Agent) servePeerAPI(dir string) error {
	api, err := NewPeerAPI(PeerAPIConfig{
		Store: a.store, Auth: RequireClientCert, Logger: a.cfg.Logger,
		BeforeJoin: a.expectJoin, Logs: a.cfg.Logs,
		Ready: func(name string, v int64) ReadyState {
			if rec := a.rec.Load(); rec != nil {
				return rec.VersionState(name, v)
			}
			return ReadyState{State: "pending"}
		},
		Artifacts: a.artifacts,
		Info: func() PeerInfo {
			info := PeerInfo{NodeID: a.store.node.ID()}
			if addr := a.gossipAddr.Load(); addr != nil {
				info.GossipAddr = *addr
			}
			return info
		},
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	// Any node holding the CA and the join secret's hash enrolls: the
	// bootstrap node, or a voter they were copied to (docs/operations.md,
	// "Replacing a dead node").
	ca, caErr := LoadClusterCA(filepath.Join(dir, ClusterCADirName))
	hash, hashErr := LoadJoinSecretHash(dir)
	switch {
	case caErr == nil && hashErr == nil:
		mux.Handle(JoinPath, JoinHandler(ca, hash, JoinOptions{
			GossipKeys: func() ([][]byte, error) { return a.gossipKeys, nil },
			Admit:      a.admit,
			Logger:     a.cfg.Logger,
		}))
		a.enrolls = true
		a.log.Info("this node enrolls new nodes (it holds the cluster CA and the join secret's hash)")
	case caErr == nil:
		a.log.Info("this node holds the cluster CA but no join secret's hash: it enrolls no nodes", "err", hashErr)
	case !errors.Is(caErr, ErrNoClusterCA):
		a.log.Warn("the cluster CA in the data directory does not load: this node enrolls no nodes", "err", caErr)
	}
	a.peerSrv = &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(a.cfg.Logger.Handler(), slog.LevelDebug),
	}
	ln := tls.NewListener(a.peerLn, a.identity.APIServerTLS())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.peerSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("peer API stopped", "err", err)
		}
	}()
	return nil
}

// admit refuses to enroll a node under the ID of a server the cluster
// already has: a token holder must not obtain a certificate that
// impersonates a member. (A member that lost its data directory gets a
// new ID on its next start; remove the old one first if it was kept.)
func (a *Agent) admit(_ context.Context, nodeID string) error {
	servers, err := a.store.node.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == nodeID {
			return fmt.Errorf("node ID %s already belongs to a server of this cluster; a new node generates its own ID (delete DATA/node-id on a copied data directory)", nodeID)
		}
	}
	return nil
}

// watchMembers keeps the peer resolver and the peers file in step with
// gossip.
func (a *Agent) watchMembers(ctx context.Context) {
	for _, m := range a.members.Members() {
		if m.Meta.APIAddr != "" {
			a.peers.Set(m.Name, "https://"+m.Meta.APIAddr)
		}
	}
	a.saveKnownPeers()
	tick := time.NewTicker(healInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-a.members.Events():
			if !ok {
				return // gossip shut down
			}
			if ev.Member.Meta.APIAddr != "" {
				a.peers.Set(ev.Member.Name, "https://"+ev.Member.Meta.APIAddr)
			}
			// The event's member first: one force-left is no longer in
			// Members, and only its "left" makes the file forget it.
			a.saveKnownPeers(ev.Member)
		case <-tick.C:
			a.heal(ctx)
			a.saveKnownPeers() // catches changes whose events were dropped
		}
	}
}

// saveKnownPeers records the members' peer API addresses in
// DATA/cluster/peers when they changed; first is merged before the
// current members.
func (a *Agent) saveKnownPeers(first ...Member) {
	if _, err := a.known.update(append(first, a.members.Members()...), time.Now()); err != nil {
		a.log.Warn("could not record the members' addresses for the next restart", "err", err)
	}
}

// joinSeeds lists the peer API addresses joinLoop tries: cluster.join
// first, then the members this node last saw, most recent first.
func (a *Agent) joinSeeds() []string {
	own := a.PeerAddr()
	var seeds []string
	for _, s := range append(slices.Clone(a.cfg.Join), a.known.seeds(own)...) {
		if s != own && !slices.Contains(seeds, s) {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// healInterval is how often a node tries to reach members gossip gave up
// on, and the leader re-adds live servers missing from Raft.
const healInterval = 5 * time.Second

// heal mends what a partition leaves behind. Gossip never probes a member
// it declared dead again, so after a partition heals both sides would
// keep seeing the other as dead: the node joins the dead members' gossip
// addresses again (a real failure just makes that join fail). And a node
// the autopilot removed while it was cut off comes back as an alive
// member that Raft no longer lists: the leader adds it again (as a
// non-voter if the voters are complete), so no operator has to. The
// leader also removes from Raft a member gossip reports as left, which
// is not coming back and would count as a failed voter.
func (a *Agent) heal(ctx context.Context) {
	var dead []string
	for _, m := range a.members.Members() {
		if m.Status == StatusDead && m.Addr != "" {
			dead = append(dead, m.Addr)
		}
	}
	if len(dead) > 0 {
		jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if n, err := a.members.JoinNow(jctx, dead); err == nil && n > 0 {
			a.log.Info("gossip reached members it had declared dead", "reached", n)
		}
		cancel()
	}
	if !a.store.node.IsLeader() {
		a.warnRaftSilence(time.Now())
		return
	}
	servers, err := a.store.node.Servers()
	if err != nil {
		return
	}
	inRaft := map[string]bool{}
	for _, s := range servers {
		inRaft[s.ID] = true
	}
	a.repairRaftAddrs(ctx, servers)
	self := a.store.node.ID()
	for _, m := range a.members.Members() {
		if m.Status == StatusLeft && inRaft[m.Name] && m.Name != self {
			// It left for good (Store.Leave removes a leaving node
			// itself, unless that failed, e.g. no leader then).
			if err := a.store.node.RemoveServer(ctx, m.Name); err != nil {
				a.log.Warn("removing a server that left from Raft", "server_id", m.Name, "err", err)
			} else {
				a.log.Info("removed a server that left the cluster from the Raft configuration", "server_id", m.Name)
			}
			continue
		}
		if m.Status != StatusAlive || inRaft[m.Name] || m.Meta.Role != RoleServer || m.Meta.RaftAddr == "" {
			continue
		}
		voter, err := a.store.node.addServerCapped(ctx, m.Name, m.Meta.RaftAddr, true)
		if err != nil {
			a.log.Warn("re-adding a live server to Raft", "server_id", m.Name, "err", err)
			continue
		}
		a.log.Info("re-added a live server that Raft had removed", "server_id", m.Name, "voter", voter)
	}
}

// raftSilence is how long a follower may go without hearing from a Raft
// leader, while gossip shows other live members, before it warns
// (raftSilenceWarned bounds how often).
var raftSilence = 30 * time.Second

const raftSilenceRepeat = 5 * time.Minute

// warnRaftSilence (on a non-leader, from heal) warns when no Raft leader
// has contacted this node for raftSilence although gossip reports other
// live members: a node whose Raft port the others cannot reach joined
// gossip and looked healthy, while every deploy waited for it in vain.
func (a *Agent) warnRaftSilence(now time.Time) {
	last := a.store.node.raft.LastContact()
	if last.IsZero() {
		last = a.store.node.startedAt
	}
	if now.Sub(last) < raftSilence || now.Sub(a.raftSilenceWarned) < raftSilenceRepeat {
		return
	}
	alive := 0
	for _, m := range a.members.Members() {
		if m.Status == StatusAlive && m.Name != a.store.node.ID() {
			alive++
		}
	}
	if alive == 0 {
		return
	}
	a.raftSilenceWarned = now
	a.log.Warn("no Raft leader has contacted this node lately although gossip reports other live members: the leader may not reach this node's Raft address (check that its port is open from the other nodes, and raft.advertise), or the cluster has no quorum",
		"raft_addr", a.store.node.Addr(), "silent_for", now.Sub(last).Round(time.Second).String(), "live_members", alive)
}

// repairRaftAddrs (on the leader) points each server of the Raft
// configuration at the Raft address its live gossip member announces,
// when the two differ and the member answers at its peer API as itself.
// A node that restarted on a new address does this itself through its
// join (and until gossip drops its old entry, that entry's address would
// be the stale one: hence the question); this catches a node whose entry
// another process took over, such as a copy of its data directory that
// asked to be added before it found the clash and stopped.
func (a *Agent) repairRaftAddrs(ctx context.Context, servers []ServerInfo) {
	members := map[string]Member{}
	for _, m := range a.members.Members() {
		members[m.Name] = m
	}
	self := a.store.node.ID()
	for _, s := range servers {
		if s.ID == self {
			// The leader itself, restarted on a new address while no
			// other node could take its request (every node moved):
			// nothing else corrects its own entry. Its own replication
			// state is not at stake, so it keeps its role.
			if addr := a.store.node.Addr(); s.Addr != addr {
				if err := a.store.node.AddServer(ctx, self, addr, s.Voter); err != nil {
					a.log.Warn("pointing the leader's own Raft entry at its address", "raft_addr", addr, "err", err)
				} else {
					a.log.Warn("the leader's own Raft address in the configuration was out of date; updated it", "old_raft_addr", s.Addr, "raft_addr", addr)
				}
			}
			continue
		}
		m, ok := members[s.ID]
		if !ok || m.Status != StatusAlive || m.Meta.RaftAddr == "" || m.Meta.RaftAddr == s.Addr {
			continue
		}
		if why := a.answersAs(ctx, m); why != "" {
			a.log.Debug("a server's Raft address differs from its gossip member's, whose entry may be stale; leaving it", "server_id", s.ID, "why", why)
			continue
		}
		if s.Voter {
			// The leader's replication state for this ID may count
			// entries that the other node (the one gone from the old
			// address) acknowledged and this one never had: kept as a
			// voter, its acknowledgements could commit a write only one
			// other node holds. Removed and added back as a non-voter it
			// starts from scratch, and the autopilot promotes it once it
			// has caught up.
			if err := a.store.node.RemoveServer(ctx, s.ID); err != nil {
				a.log.Warn("removing a server whose Raft address its gossip member contradicts", "server_id", s.ID, "err", err)
				continue
			}
		}
		if err := a.store.node.AddServer(ctx, s.ID, m.Meta.RaftAddr, false); err != nil {
			a.log.Warn("pointing a server at the Raft address its gossip member announces", "server_id", s.ID, "raft_addr", m.Meta.RaftAddr, "err", err)
			continue
		}
		a.log.Warn("a server's Raft address differed from the one its live gossip member announces; updated it",
			"server_id", s.ID, "old_raft_addr", s.Addr, "raft_addr", m.Meta.RaftAddr)
	}
}

// joinLoop joins gossip through the seeds, then asks the Raft leader (via
// any seed, which forwards) to add this node, retrying until it is in the
// configuration. It also runs on restarts, so a node whose address
// changed is updated in the configuration (AddServer with its ID and new
// address), and one the autopilot removed meanwhile is added back.
func (a *Agent) joinLoop(ctx context.Context, seeds []string) {
	defer a.firstJoinDone()
	backoff := 200 * time.Millisecond
	gossipDone := false
	gossipWarned := false
	for {
		live, gossipAddrs := a.probeSeeds(ctx, seeds)
		if !gossipDone && len(gossipAddrs) > 0 {
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := a.members.JoinNow(jctx, gossipAddrs)
			cancel()
			switch {
			case err == nil && n > 0:
				gossipDone = true
			case !gossipWarned && ctx.Err() == nil:
				gossipWarned = true
				a.log.Warn("the seeds answer on their peer API but gossip could not reach them: this node asks to join Raft only once gossip works (check that the gossip port, TCP and UDP, is open between the nodes, and the gossip key); retrying",
					"gossip_addrs", gossipAddrs, "err", err)
			}
		}
		// Before asking Raft to add this node: a node that another live
		// node's identity (a copied data directory, a node_name in use)
		// would make Raft replace must not get in.
		err := a.checkIdentity(ctx) // on a clash it has failed the agent
		a.firstJoinDone()
		if err != nil {
			return
		}
		req := JoinRequest{ID: a.store.node.ID(), RaftAddr: a.store.node.Addr(), Voter: true}
		if !gossipDone {
			// Without gossip this node has not met the cluster's members,
			// so the identity check above proved nothing, and a member no
			// other node sees by gossip would be a voter the cluster cannot
			// wait for or heal.
			live = nil
		}
		for _, seed := range live {
			jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := a.client.Join(jctx, "https://"+seed, req)
			cancel()
			if err == nil && gossipDone {
				a.log.Info("joined the cluster", "via", seed)
				return
			}
			if err != nil {
				a.log.Debug("raft join attempt failed; retrying", "seed", seed, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// firstJoinDone closes FirstJoinChecked's channel, once.
func (a *Agent) firstJoinDone() { a.firstJoinOnce.Do(func() { close(a.firstJoin) }) }

// FirstJoinChecked returns a channel that is closed once the agent's first
// join round has checked this node's identity against the members gossip
// found (at once when it has no member to join through, and when the
// agent stops). A node waits for it, for a few seconds at most, before it
// reports itself started: a node_name in use or a copied data directory
// found then is on Failed, so the node fails to start instead of printing
// its ready banner and then stopping.
func (a *Agent) FirstJoinChecked() <-chan struct{} { return a.firstJoin }

// probeSeeds asks every seed for its gossip address, all at once, so
// stale seeds (a peers file lists old addresses too) cost one timeout a
// round, not one each. It returns the seeds that answered, in the order
// given, and their gossip addresses; a seed that turns out to be this
// node is left out. A seed with this node's ID but another gossip address
// is another node running this data directory: it is kept, so the gossip
// join meets it and the identity check sees the clash.
func (a *Agent) probeSeeds(ctx context.Context, seeds []string) (live, gossipAddrs []string) {
	infos := make([]PeerInfo, len(seeds))
	errs := make([]error, len(seeds))
	var wg sync.WaitGroup
	for i, seed := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			infos[i], errs[i] = a.client.Info(ictx, "https://"+seed)
		}()
	}
	wg.Wait()
	for i, seed := range seeds {
		if errs[i] != nil {
			a.log.Debug("seed not reachable", "seed", seed, "err", errs[i])
			continue
		}
		if infos[i].NodeID == a.store.node.ID() && (infos[i].GossipAddr == "" || infos[i].GossipAddr == a.members.LocalAddr()) {
			continue
		}
		live = append(live, seed)
		if infos[i].GossipAddr != "" {
			gossipAddrs = append(gossipAddrs, infos[i].GossipAddr)
		}
	}
	return live, gossipAddrs
}

// blobSyncInterval is how often a node checks it holds every live module.
const blobSyncInterval = 10 * time.Second

// syncBlobs fetches every module a registered version names that this
// node lacks, after each registry change and periodically.
func (a *Agent) syncBlobs(ctx context.Context) {
	ch, unsubscribe := a.store.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(blobSyncInterval)
	defer tick.Stop()
	// The agent's context reaches the fetch, so Close does not wait for a
	// peer that accepted and never answers.
	reader := a.peerBlobs(0)
	for {
		for sha := range a.store.State().LiveBlobs() {
			if ctx.Err() != nil {
				return
			}
			if a.store.Blobs().Has(sha) {
				continue
			}
			if _, err := reader.ReadBlob(ctx, sha); err != nil {
				a.log.Debug("module not fetched yet; will retry", "sha256", sha, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

// expectJoin collects join requests while the cluster waits for
// BootstrapExpect servers, and bootstraps it with all of them as voters
// once enough asked. Until then joiners get ErrUnavailable and retry.
func (a *Agent) expectJoin(_ context.Context, req JoinRequest) (bool, error) {
	a.expectMu.Lock()
	defer a.expectMu.Unlock()
	if a.pending == nil {
		return false, nil // bootstrapped (or never waiting): the usual join
	}
	a.pending[req.ID] = ServerInfo{ID: req.ID, Addr: req.RaftAddr, Voter: true}
	if len(a.pending)+1 < a.expect {
		a.log.Info("waiting for the expected servers before the first election", "have", len(a.pending)+1, "expect", a.expect)
		return true, fmt.Errorf("%w: the cluster waits for %d servers before its first election; %d so far", ErrUnavailable, a.expect, len(a.pending)+1)
	}
	servers := make([]ServerInfo, 0, len(a.pending))
	for _, s := range a.pending {
		servers = append(servers, s)
	}
	if err := a.store.node.BootstrapServers(servers); err != nil {
		return true, err
	}
	a.pending = nil
	return true, nil
}

// SetReconciler lets the peer API answer readiness questions.
func (a *Agent) SetReconciler(r *Reconciler) { a.rec.Store(r) }

// Store is the replicated registry (with KV) and its blobs.
func (a *Agent) Store() *Store { return a.store }

// Members lists the cluster's members as gossip sees them.
func (a *Agent) Members() []Member { return a.members.Members() }

// MemberInfos joins gossip's view with each member's Raft role, for the
// admin API's GET /v1/members.
func (a *Agent) MemberInfos() []MemberInfo {
	roles := map[string]string{}
	if servers, err := a.store.node.Servers(); err == nil {
		for _, s := range servers {
			switch {
			case s.Leader:
				roles[s.ID] = "leader"
			case s.Voter:
				roles[s.ID] = "voter"
			default:
				roles[s.ID] = "non-voter"
			}
		}
	}
	var out []MemberInfo
	for _, m := range a.members.Members() {
		role := roles[m.Name]
		if role == "" {
			role = "none"
		}
		out = append(out, MemberInfo{Name: m.Name, NodeName: m.Meta.Name, Addr: m.Addr, Status: string(m.Status), Role: role,
			Region: m.Meta.Region, Version: m.Meta.Version, RaftAddr: m.Meta.RaftAddr})
	}
	return out
}

// BlobReader returns modules from the local store or, when missing, from
// a peer.
func (a *Agent) BlobReader(maxBytes int64) BlobReader { return a.peerBlobs(maxBytes) }

func (a *Agent) peerBlobs(maxBytes int64) *PeerBlobs {
	return &PeerBlobs{Local: a.store.Blobs(), Node: a.store.node, Client: a.client, Peers: a.peers, MaxBytes: maxBytes}
}

// Enrolls reports whether this node enrolls new nodes: it holds the
// cluster CA and the join secret's hash (the node that bootstrapped, or a
// voter they were copied to). Only such a node is a seed for a new one.
func (a *Agent) Enrolls() bool { return a.enrolls }

// peerAdvertise is the peer API address other nodes dial when
// AgentConfig.PeerAdvertise is empty: the listener's address, or for a
// listener on every address (":7948", "0.0.0.0:7948") the host Raft
// advertises with the listener's port. Other nodes cannot dial "[::]" or
// "0.0.0.0": a member advertising it had every forwarded write, module
// transfer and readiness check go to the caller itself.
func peerAdvertise(listen string, rc Config) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("peer API address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return listen, nil
	}
	raftAddr := rc.RaftAdvertise
	if raftAddr == "" {
		raftAddr = rc.RaftBind
	}
	rh, _, err := net.SplitHostPort(raftAddr)
	if ip := net.ParseIP(rh); err != nil || ip == nil || ip.IsUnspecified() {
		return "", fmt.Errorf("the peer API listens on every address (%s) and the address to advertise cannot be derived from the Raft address %q: set the peer API's advertised address (gojinn-node: cluster.peer_advertise or --advertise)", listen, raftAddr)
	}
	return net.JoinHostPort(rh, port), nil
}

// PeerAddr is the peer API address other nodes use for this node; a new
// node lists it in cluster.join.
func (a *Agent) PeerAddr() string { return strings.TrimPrefix(a.peerURL, "https://") }

// WaitServable waits until every live member serves name at version
// (local included) and names the nodes that do not when ctx ends or one
// fails to load it. Members are asked in parallel, each question bounded,
// and a member gossip declares dead or left meanwhile is no longer waited
// for (servable.go).
func (a *Agent) WaitServable(ctx context.Context, name string, version int64) error {
	return a.waitServable(ctx, name, version)
}

// Leave removes this node from the cluster (Raft configuration and
// gossip) before a permanent shutdown.
func (a *Agent) Leave(ctx context.Context) error {
	err := a.store.Leave(ctx)
	if a.members != nil {
		err = errors.Join(err, a.members.Leave(5*time.Second))
	}
	return err
}

// Close stops the agent without leaving: a restart rejoins by itself.
func (a *Agent) Close() {
	if a.stop != nil {
		a.stop()
	}
	if a.peerSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.peerSrv.Shutdown(ctx); err != nil {
			_ = a.peerSrv.Close()
		}
		cancel()
	} else if a.peerLn != nil {
		_ = a.peerLn.Close()
	}
	if a.members != nil {
		_ = a.members.Shutdown()
	}
	a.wg.Wait()
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Warn("raft shutdown", "err", err)
		}
	}
}
