package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrNotLeader means a write reached a node that is not the Raft leader.
// The error is a *NotLeaderError naming the leader when one is known; it
// also matches ErrUnavailable and raft's own error of the kind, so the API
// answers 503 when a follower cannot forward the write to a leader
// (Store forwards it when it can).
var ErrNotLeader = errors.New("not the raft leader")

// NotLeaderError is the error of a write on a node that is not (or stopped
// being) the leader.
type NotLeaderError struct {
	// LeaderAddr and LeaderID name the current leader; empty when none is
	// known (an election is running).
	LeaderAddr string
	LeaderID   string
	// Lost is set when leadership was lost while the write was in flight:
	// it may or may not have been committed.
	Lost bool
}

// Error says what happened and what to do.
func (e *NotLeaderError) Error() string {
	switch {
	case e.Lost:
		return "raft leadership was lost while committing: the write may or may not have been applied; read the state before retrying"
	case e.LeaderAddr == "":
		return "this node is not the raft leader and no leader is known (an election is running?); retry in a few seconds"
	default:
		return fmt.Sprintf("this node is not the raft leader; send writes to the leader %s (node %s)", e.LeaderAddr, e.LeaderID)
	}
}

// Is matches ErrNotLeader, ErrUnavailable and raft.ErrNotLeader (or
// raft.ErrLeadershipLost when Lost).
func (e *NotLeaderError) Is(target error) bool {
	switch target {
	case ErrNotLeader, ErrUnavailable:
		return true
	case raft.ErrNotLeader:
		return !e.Lost
	case raft.ErrLeadershipLost:
		return e.Lost
	}
	return false
}

// Node is one Raft server: a hashicorp/raft instance with a BoltDB log and
// stable store (DATA/raft/raft.db), file snapshots (DATA/raft/snapshots,
// kept private by privateSnapshots) and a TCP transport
// (Config.Transport: mutual TLS in a cluster). Open bootstraps a new data
// directory as a single-voter cluster unless Config.Join says a leader
// will add it.
//
// Goroutines: raft's own (stopped by Shutdown in Close); observe, which
// turns raft observations into logs and wake-ups for waitLeader (stopped by
// stopCh in Close); the KV apply batcher's loop (kv_batch.go, stopped in
// Close right after Shutdown); and one waiter per in-flight Apply or batch
// (tracked by applies, ended by raft resolving the future, at the latest
// on Shutdown; Close waits for them at most appliesWaitTimeout).
type Node struct {
	cfg       Config
	id        raft.ServerID
	log       *slog.Logger
	raft      *raft.Raft
	trans     raft.Transport
	bolt      *raftboltdb.BoltStore
	stable    *stableStore // raft's view of bolt's stable half; closes it
	startedAt time.Time
	// startedEmpty is set when Open found no Raft state: a node opened
	// with Join that is not in a cluster yet, or one that bootstrapped.
	startedEmpty bool

	observer *raft.Observer
	obsCh    chan raft.Observation
	stopCh   chan struct{}
	doneCh   chan struct{}
	// compactDone is closed when compactLog (raft_compact.go) returns.
	compactDone chan struct{}
	applies     sync.WaitGroup
	batcher     *applyBatcher
	// kvMetrics counts KV operations (Store) and batch sizes (batcher)
	// for the Collector.
	kvMetrics kvMetrics

	// proposeMu is held for reading across every raft.Apply call and for
	// writing while Close sets closed, so nothing is proposed once
	// Shutdown may have begun: raft would leave such a future
	// unresolved.
	proposeMu sync.RWMutex
	joinMu    sync.Mutex // serializes voter-count checks with the membership change (autopilot.go)
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every raft observation
	closed    bool          // set by Close before it waits for applies
	// maxVoters is the autopilot's MaxVoters (0 until RunAutopilot).
	maxVoters int

	closeOnce sync.Once
	closeErr  error
}

// Open starts a Raft node on cfg.DataDir. A directory without Raft state is
// bootstrapped as a cluster whose only voter is this node; a directory with
// state restarts from its snapshot and log. Open returns once this node is
// the leader and its FSM has applied every committed entry, or fails when
// ctx ends first.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The log and the snapshots hold every function's env (secrets) and
	// the KV data: the directory is for the node's user alone, also when
	// it exists already with a wider mode (a data directory from an
	// image, say), and so are the files in it (raft.db below,
	// privateSnapshots), so that a copy of them is private too.
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: create %s: %w (check the data directory's permissions)", raftDir, err)
	}
	if err := os.Chmod(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: make %s private (mode 0700): %w", raftDir, err)
	}
	if err := checkDataDirIntact(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(raftDir, "raft.db")
	hl := newHCLog(cfg.Logger, "raft", hclog.Debug)

	// Everything opened so far is closed if a later step fails.
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]() // best effort; err says what failed first
			}
		}
	}()

	bolt, err := openBolt(dbPath)
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("raft: %s is locked: is another gojinn-node using data directory %s? %w", dbPath, cfg.DataDir, err)
		}
		return nil, fmt.Errorf("raft: open %s: %w", dbPath, err)
	}
	stable := &stableStore{StableStore: bolt}
	closers = append(closers, func() error { return stable.close(bolt.Close) })

	// BoltDB creates the file 0600, but one from elsewhere (an image, a
	// copy) may be wider: it holds the same secrets as the snapshots.
	if err := os.Chmod(dbPath, 0o600); err != nil {
		return nil, fmt.Errorf("raft: make %s private (mode 0600): %w", dbPath, err)
	}

	snaps, err := newPrivateSnapshots(raftDir, snapshotRetain, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot store in %s: %w", raftDir, err)
	}

	trans := cfg.Transport
	if trans == nil {
		nt, err := newTCPTransport(cfg.RaftBind, cfg.RaftAdvertise, hl.Named("net"))
		if err != nil {
			return nil, err
		}
		trans = nt
	}
	if c, ok := trans.(io.Closer); ok {
		closers = append(closers, c.Close)
	}

	hasState, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("raft: read existing state in %s: %w", raftDir, err)
	}
	id, err := loadOrCreateNodeID(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	rc, err := cfg.raftConfig(id)
	if err != nil {
		return nil, err
	}
	rc.Logger = hl
	logs := &countingLogStore{LogStore: bolt, trigger: cfg.LogBytesSnapshot, due: make(chan struct{}, 1)}
	r, err := newRaft(rc, cfg.FSM, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raft: start node %s: %w; the state in %s cannot be loaded: restore a backup into a fresh data directory (gojinn-node restore), "+
			"or, in a cluster, start this node with an empty data directory and join it again", id, err, raftDir)
	}
	closers = append(closers, func() error { return r.Shutdown().Error() })

	n := &Node{
		cfg:       cfg,
		id:        id,
		log:       cfg.Logger.With("component", "cluster", "node_id", string(id)),
		raft:      r,
		trans:     trans,
		bolt:      bolt,
		startedAt: time.Now().UTC(),
		obsCh:     make(chan raft.Observation, 16),
		stopCh:    make(chan struct{}),
		doneCh:    make(chan struct{}),
		changed:   make(chan struct{}),
	}
	n.startedEmpty = !hasState
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	go n.observe()
	n.stable = stable
	n.compactDone = make(chan struct{})
	compactDone := n.compactDone
	go n.compactLog(logs, compactDone)
	closers = append(closers, func() error {
		// Runs before Shutdown (closers unwind in reverse); raft never
		// blocks on a deregistered observer.
		r.DeregisterObserver(n.observer)
		close(n.stopCh)
		<-n.doneCh
		<-compactDone
		return nil
	})
	n.batcher = newApplyBatcher(n)
	closers = append(closers, func() error {
		n.batcher.stop() // nothing was submitted: the node was not returned
		return nil
	})

	switch {
	case !hasState && cfg.Join:
		// A leader adds this node; until then there is nothing to wait for.
		n.log.Info("raft node waiting to be added to a cluster", "raft_addr", string(trans.LocalAddr()))
		return n, nil
	case !hasState:
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: id, Address: trans.LocalAddr()}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("raft: bootstrap a single-voter cluster: %w", err)
		}
		n.log.Info("bootstrapped a new single-voter raft cluster", "raft_addr", string(trans.LocalAddr()))
	case !n.soleVoter():
		// A member of a multi-node cluster restarts without waiting for a
		// leader: it serves from local state and catches up once one is
		// elected (writes fail with ErrUnavailable meanwhile).
		return n, nil
	}
	if err := n.waitLeader(ctx); err != nil {
		return nil, err
	}
	if err := n.catchUp(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// newTCPTransport listens on bind and advertises advertise (or the address
// actually bound).
func newTCPTransport(bind, advertise string, logger hclog.Logger) (*raft.NetworkTransport, error) {
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("raft: resolve RaftAdvertise %q: %w", advertise, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			return nil, fmt.Errorf("raft: RaftAdvertise %q must name one reachable IP, not every address", advertise)
		}
		adv = a
	}
	t, err := raft.NewTCPTransportWithConfig(bind, adv, &raft.NetworkTransportConfig{
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	})
	if err != nil {
		return nil, fmt.Errorf("raft: listen on %s: %w (is the port in use? choose another port: config key raft.bind)", bind, err)
	}
	return t, nil
}

// loadOrCreateNodeID returns the node ID stored in dir/node-id, creating
// it (from want, or random) on first start. A want that differs from the
// stored ID is an error: Raft would take the node for another server.
func loadOrCreateNodeID(dir, want string) (raft.ServerID, error) {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if err := validateNodeID(id); err != nil {
			return "", fmt.Errorf("raft: %s is damaged: %w (restore it; deleting it makes this a new node)", path, err)
		}
		if want != "" && want != id {
			return "", fmt.Errorf("raft: NodeID %q differs from %q stored in %s: a data directory belongs to one node (use another directory, or drop the NodeID setting)", want, id, path)
		}
		return raft.ServerID(id), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("raft: read %s: %w", path, err)
	}
	id := want
	if id == "" {
		var rnd [8]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return "", fmt.Errorf("raft: generate a node ID: %w", err)
		}
		id = hex.EncodeToString(rnd[:])
	}
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("raft: store node ID: %w", err)
	}
	return raft.ServerID(id), nil
}

// checkDataDirIntact refuses a data directory that lost part of a node's
// state, before anything in it is created or changed: a raft.db gone (or
// emptied) from a directory with snapshots or modules would start an
// empty registry, the old one lost without a word; a node-id gone from
// one with a raft.db would start a new identity that is no voter of that
// state's cluster and never leads. want is Config.NodeID: a node given
// its ID needs no node-id file.
func checkDataDirIntact(dataDir, want string) error {
	dbPath := filepath.Join(dataDir, "raft", "raft.db")
	fi, err := os.Stat(dbPath)
	dbHasData := err == nil && fi.Size() > 0
	if _, err := os.Stat(filepath.Join(dataDir, "node-id")); errors.Is(err, fs.ErrNotExist) && dbHasData && want == "" {
		return fmt.Errorf("raft: %s holds a node's state but %s is missing: a new identity would never be part of that state's cluster. "+
			"Restore node-id (this node's ID is the node_id of its earlier log lines, and `gojinn-node members` on a peer lists it), "+
			"or restore a backup into a fresh data directory", dbPath, filepath.Join(dataDir, "node-id"))
	}
	if dbHasData {
		return nil
	}
	for _, evidence := range []string{filepath.Join(dataDir, "raft", "snapshots"), filepath.Join(dataDir, "blobs", "sha256")} {
		if entries, err := os.ReadDir(evidence); err == nil && len(entries) > 0 {
			return fmt.Errorf("raft: %s is missing or empty, but %s holds a node's snapshots or modules: this node's registry and KV state are gone. "+
				"Restore a backup into a fresh data directory (gojinn-node restore), or, in a cluster, start this node with an empty data directory and join it again; "+
				"delete %s only to start over with nothing", dbPath, dataDir, dataDir)
		}
	}
	return nil
}

// openBolt opens the Raft log and stable store. A file bbolt panics on
// (a truncated one: "invalid freelist page") is an error like any other
// damage, not a crash of the node. checkBoltFile finds the known cases
// first; a panic recovered after bbolt took its lock and mapped the file
// leaves both to the process's exit (the node stops on this error).
func openBolt(path string) (_ *raftboltdb.BoltStore, err error) {
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%s is damaged (%v)", path, v)
		}
	}()
	return raftboltdb.New(raftboltdb.Options{
		Path: path,
		// Fail instead of blocking forever on another process's lock.
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
}

// newRaft is raft.NewRaft, with its panic on a log that does not reach
// back to the snapshot it restored (the newest snapshot damaged, an older
// one used) turned into an error. It panics before it starts any
// goroutine.
func newRaft(rc *raft.Config, fsm raft.FSM, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (_ *raft.Raft, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the log does not continue the snapshot it would start from (%v): the newest snapshot is probably damaged", v)
		}
	}()
	return raft.NewRaft(rc, fsm, logs, stable, snaps, trans)
}

// writeFileAtomic writes path through a synced temporary file and a
// rename, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }() // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename itself must be durable: a node-id lost in a power cut
	// beside a raft.db stops the next start (checkDataDirIntact).
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// observe logs leadership changes and wakes waitLeader. It ends when
// stopCh closes.
func (n *Node) observe() {
	defer close(n.doneCh)
	for {
		select {
		case <-n.stopCh:
			return
		case o := <-n.obsCh:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				if d.LeaderAddr == "" {
					n.log.Info("raft leader lost")
				} else {
					n.log.Info("raft leader elected", "leader_addr", string(d.LeaderAddr), "leader_id", string(d.LeaderID))
				}
			case raft.RaftState:
				n.log.Debug("raft state changed", "state", d.String())
			}
			n.mu.Lock()
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
		}
	}
}

// changedCh returns a channel closed at the next raft observation.
func (n *Node) changedCh() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// waitLeader waits until this node is the leader, or until another node is
// once the cluster has peers.
func (n *Node) waitLeader(ctx context.Context) error {
	// Observations are dropped when their buffer is full; the ticker makes
	// a lost wake-up cost a quarter second, not a hang.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.changedCh() // before the check, so no change is missed
		if n.raft.State() == raft.Leader {
			return nil
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" && !n.soleVoter() {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			addr, lid := n.raft.LeaderWithID()
			return fmt.Errorf("raft: node %s is %s and no leader was elected (leader %q %q): %w", n.id, n.raft.State(), addr, lid, ctx.Err())
		}
	}
}

// soleVoter reports whether this node is the only voter.
func (n *Node) soleVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == n.id
		}
	}
	return voters == 1 && self
}

// catchUp runs on a new leader: a barrier makes the FSM apply every entry
// of the log (Raft replays the log after the snapshot only once it commits
// again), and when the node's Raft address changed since the configuration
// was written (a restart with another port), the configuration learns the
// new one.
func (n *Node) catchUp(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return nil
	}
	if err := n.Barrier(ctx); err != nil {
		return err
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("raft: read configuration: %w", err)
	}
	local := n.trans.LocalAddr()
	for _, s := range f.Configuration().Servers {
		if s.ID == n.id && s.Address != local && s.Suffrage == raft.Voter {
			n.log.Info("raft address changed; updating the configuration", "old", string(s.Address), "new", string(local))
			if err := n.raft.AddVoter(n.id, local, 0, n.timeout(ctx)).Error(); err != nil {
				return fmt.Errorf("raft: record this node's new address %s: %w", local, err)
			}
		}
	}
	return nil
}

// timeout is ctx's remaining time, or ApplyTimeout without a deadline.
func (n *Node) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return n.cfg.ApplyTimeout
}

// Apply proposes cmd to the cluster and returns the FSM's response once the
// entry is committed and applied on this node. The timeout is ctx's
// deadline, or Config.ApplyTimeout without one. On a follower it fails
// with a *NotLeaderError (errors.Is ErrNotLeader) naming the leader. When
// ctx ends first the entry may still be committed later.
//
// Binary KV commands (storage.EncodeKVCommand) go through the apply
// batcher, which may propose them together with concurrent ones in one
// entry; the response is still this command's own storage.ApplyResult.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	if n.isClosed() {
		// Before the leader check: a closed node is no leader, and a
		// not-leader answer would have callers wait for an election.
		return nil, errNodeClosed
	}
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader(false)
	}
	if batchable(cmd) {
		return n.batcher.apply(ctx, cmd)
	}
	n.proposeMu.RLock()
	if n.isClosed() {
		n.proposeMu.RUnlock()
		return nil, errNodeClosed
	}
	n.applies.Add(1)
	f := n.raft.Apply(cmd, n.timeout(ctx))
	n.proposeMu.RUnlock()
	done := make(chan error, 1)
	go func() {
		defer n.applies.Done()
		done <- f.Error()
	}()
	select {
	case err := <-done:
		if err != nil {
			return nil, n.applyError(err)
		}
		return f.Response(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("raft apply: %w (the entry may still be committed; read the state before retrying)", ctx.Err())
	}
}

// errNodeClosed answers a proposal to a node that is closing or closed,
// or that the apply batcher still held when the node closed.
var errNodeClosed = fmt.Errorf("raft apply: %w: the node is closed", ErrUnavailable)

// appliesWaitTimeout bounds how long Close waits for the goroutines of
// in-flight proposals after raft's shutdown (normally no time at all).
var appliesWaitTimeout = 5 * time.Second

// waitGroupFor waits for wg up to d and reports whether it finished. On a
// timeout the goroutine that waits for wg stays until wg finishes.
func waitGroupFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// isClosed reports whether Close has begun.
func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

func (n *Node) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeader(false)
	case errors.Is(err, raft.ErrLeadershipLost):
		return n.notLeader(true)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("raft apply: %w: the node is shutting down: %w", ErrUnavailable, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("raft apply: %w: the leader is too busy to take the write in time (%w); retry", ErrUnavailable, err)
	}
	return fmt.Errorf("raft apply: %w", err)
}

func (n *Node) notLeader(lost bool) *NotLeaderError {
	addr, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderAddr: string(addr), LeaderID: string(id), Lost: lost}
}

// Barrier waits until every entry committed before the call is applied to
// this node's FSM. Only the leader can run it.
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.raft.Barrier(n.timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", n.applyError(err))
	}
	return nil
}

// Snapshot takes a Raft snapshot now and compacts the log behind it.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft snapshot: %w", err)
	}
	return nil
}

// ID is the node's Raft server ID.
func (n *Node) ID() string { return string(n.id) }

// Addr is the Raft address this node advertises to peers.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's Raft address and ID, empty when none is
// known.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// Status describes the node. Version and Functions are left for the caller
// (Store.Status fills Functions).
func (n *Node) Status() Status {
	addr, _ := n.raft.LeaderWithID()
	st := Status{
		NodeID:       string(n.id),
		RaftState:    n.raft.State().String(),
		Leader:       string(addr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		StartedAt:    n.startedAt,
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	return st
}

// Close shuts Raft down and closes the transport and the BoltDB file. It
// is safe to call more than once; later calls return the first result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.proposeMu.Lock() // waits for proposals in progress
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.proposeMu.Unlock()
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		n.batcher.stop() // after Shutdown: a proposal cannot block; queued writes fail
		n.raft.DeregisterObserver(n.observer)
		close(n.stopCh)
		<-n.doneCh
		<-n.compactDone
		// Shutdown resolves every pending future, so the waiters end at
		// once; hashicorp/raft v1.7.3 can miss one that sits in its FSM
		// queue at the instant of shutdown, and Close must not hang on it.
		if !waitGroupFor(&n.applies, appliesWaitTimeout) {
			errs = append(errs, fmt.Errorf("raft shutdown left proposals unanswered after %v; their callers were already answered or gave up, so nothing waits on them but their own goroutines", appliesWaitTimeout))
		}
		if c, ok := n.trans.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("raft transport close: %w", err))
			}
		}
		if err := n.stable.close(n.bolt.Close); err != nil {
			errs = append(errs, fmt.Errorf("raft.db close: %w", err))
		}
		n.closeErr = errors.Join(errs...)
		if n.closeErr == nil {
			n.log.Info("raft node closed")
		}
	})
	return n.closeErr
}
