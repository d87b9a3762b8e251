package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Errors of Membership.
var (
	// ErrMembershipClosed is returned by calls after Leave or Shutdown.
	ErrMembershipClosed = errors.New("gossip membership has left the cluster or is shut down")
	// ErrJoinFailed means no seed could be joined. The error names each
	// seed's failure and the usual causes.
	ErrJoinFailed = errors.New("gossip join failed")
	// ErrMemberNotFound means no member has the name given.
	ErrMemberNotFound = errors.New("no such member")
	// ErrMemberAlive means a force-leave named a member that is alive (or
	// leaving); *MemberAliveError carries it.
	ErrMemberAlive = errors.New("the member is alive")
)

// MemberAliveError refuses to force-leave a member this node sees alive
// or leaving. It matches ErrMemberAlive.
type MemberAliveError struct {
	// Member is the member as this node sees it.
	Member Member
}

// Error says what was refused and what to do instead.
func (e *MemberAliveError) Error() string {
	who := e.Member.Name
	if e.Member.Addr != "" {
		who += " (" + e.Member.Addr + ")"
	}
	return fmt.Sprintf("member %s is %s: force-leave is only for a member that is gone for good. "+
		"To retire a running node, stop it with cluster.leave_on_shutdown = true (it removes itself); "+
		"if the machine is really gone, wait until gossip reports it dead (seconds) and try again",
		who, e.Member.Status)
}

// Is makes errors.Is(err, ErrMemberAlive) hold.
func (e *MemberAliveError) Is(target error) bool { return target == ErrMemberAlive }

// Membership is this node's view of the cluster through gossip
// (hashicorp/memberlist, SWIM): who is there, where, with what meta, and
// who left or died. It carries no replicated state; Raft does.
//
// Goroutines: memberlist's own (listeners, probe, gossip and push/pull
// tickers; ended by Shutdown, asynchronously but promptly), and at most one
// of ours, the background join loop of StartMembership (ended by success,
// RetryMax, its context, Leave or Shutdown; Shutdown waits for it).
// memberlist delivers events on its goroutines, into a buffered channel
// without blocking.
//
// Locks: lifeMu serializes Leave and Shutdown (memberlist panics on Leave
// after Shutdown) and is taken before metaMu, which serializes meta
// changes; keyMu serializes keyring changes. The member table's lock is
// taken inside memberlist's node lock and never around a memberlist call.
type Membership struct {
	cfg     MembershipConfig
	log     *slog.Logger
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil when gossip is not encrypted
	meta    *metaDelegate
	table   *memberTable

	lifeMu sync.Mutex
	left   bool // Leave ran
	shut   bool // Shutdown ran
	closed atomic.Bool

	metaMu  sync.Mutex
	curMeta NodeMeta

	keyMu sync.Mutex

	stopCh   chan struct{} // closed by Leave or Shutdown; stops the join loop
	stopOnce sync.Once
	wg       sync.WaitGroup // the join loop
	joinDone chan struct{}  // closed when the join loop ends
	joinErr  error          // written before joinDone closes
	attempts atomic.Int64   // join attempts made by the loop
}

// StartMembership starts gossip on cfg.BindAddr and returns at once. When
// cfg.Join lists seeds, a background loop joins through them, retrying with
// exponential backoff (RetryInterval doubling up to 30 s) until one
// attempt reaches at least one seed, RetryMax attempts failed, ctx ends, or
// Leave or Shutdown is called; WaitJoin reports how it ended. ctx bounds
// only that loop: the membership runs until Shutdown.
func StartMembership(ctx context.Context, cfg MembershipConfig) (*Membership, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "gossip", "node", cfg.NodeName)
	m := &Membership{
		cfg:      cfg,
		log:      log,
		keyring:  mc.Keyring,
		table:    newMemberTable(log),
		curMeta:  cfg.Meta,
		stopCh:   make(chan struct{}),
		joinDone: make(chan struct{}),
	}
	m.table.self = cfg.NodeName
	if !cfg.NameUnchecked {
		m.table.selfName = cfg.Meta.Name
	}
	m.table.deadTTL, m.table.leftTTL = cfg.DeadMemberReapTime, cfg.LeftMemberReapTime
	m.meta = newMetaDelegate(m.table, mc.RetransmitMult, log)
	enc := encodeMeta(cfg.Meta, false)
	m.meta.meta.Store(&enc)
	mc.Delegate = m.meta
	mc.Events = m.table
	mc.Conflict = conflictDelegate{t: m.table, log: log, reclaim: cfg.DeadNodeReclaimTime}
	mc.Logger = newMemberlistLogger(cfg.Logger)

	if mc.Keyring == nil {
		log.Warn("gossip is not encrypted: anyone who reaches the gossip port can read membership and join; set a key made by `gojinn-node keygen` on every node")
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		hint := "is the port in use? choose another BindAddr"
		if host, _, _ := net.SplitHostPort(cfg.BindAddr); cfg.AdvertiseAddr == "" && (host == "" || host == "0.0.0.0") {
			hint = "is the port in use? On a host whose only address is public, set AdvertiseAddr to the IP other nodes reach"
		}
		return nil, fmt.Errorf("gossip: start on %s: %w (%s)", cfg.BindAddr, err, hint)
	}
	m.ml = ml
	// The keys by fingerprint, primary first, so each step of a rotation
	// can be checked in the log without showing a key.
	log.Info("gossip started", "addr", m.LocalAddr(), "profile", cfg.Profile, "encrypted", mc.Keyring != nil,
		"keys", m.KeyFingerprints(), "seeds", len(cfg.Join))

	if len(cfg.Join) == 0 {
		close(m.joinDone)
		return m, nil
	}
	m.wg.Add(1)
	go m.joinLoop(ctx)
	return m, nil
}

// joinLoop joins through the configured seeds with backoff. It ends on
// success, after RetryMax attempts, or when ctx ends or stopCh closes.
func (m *Membership) joinLoop(ctx context.Context) {
	defer m.wg.Done()
	defer close(m.joinDone)
	for attempt := 1; ; attempt++ {
		m.attempts.Add(1)
		n, err := m.join(ctx, m.cfg.Join)
		if err == nil {
			m.log.Info("gossip: joined the cluster", "seeds_reached", n, "attempts", attempt, "members", len(m.ml.Members()))
			return
		}
		if m.cfg.RetryMax > 0 && attempt >= m.cfg.RetryMax {
			m.joinErr = fmt.Errorf("gossip: gave up joining after %d attempts (RetryMax): %w", attempt, err)
			m.log.Error("gossip: gave up joining the cluster", "attempts", attempt, "err", err)
			return
		}
		wait := joinBackoff(m.cfg.RetryInterval, attempt)
		m.log.Warn("gossip: join failed; retrying", "attempt", attempt, "retry_in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			m.joinErr = fmt.Errorf("gossip: stopped joining after %d attempts: %w (last failure: %w)", attempt, ctx.Err(), err)
			return
		case <-m.stopCh:
			t.Stop()
			m.joinErr = fmt.Errorf("gossip: stopped joining after %d attempts: %w", attempt, ErrMembershipClosed)
			return
		}
	}
}

// joinBackoff is the wait after the attempt-th failed join: base,
// doubling per failure, capped at MaxRetryInterval (or at base when that
// is larger).
func joinBackoff(base time.Duration, attempt int) time.Duration {
	ceiling := max(MaxRetryInterval, base)
	wait := base
	for i := 1; i < attempt && wait < ceiling; i++ {
		wait *= 2
	}
	return min(wait, ceiling)
}

// join contacts each seed in turn (checking ctx between seeds; one seed
// takes at most the profile's TCP timeout) and succeeds when at least one
// answered.
func (m *Membership) join(ctx context.Context, seeds []string) (int, error) {
	total := 0
	var failures []string
	for _, seed := range seeds {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("%w: stopped before trying every seed: %w", ErrJoinFailed, err)
		}
		if m.closed.Load() {
			return total, ErrMembershipClosed
		}
		n, err := m.ml.Join([]string{seed})
		total += n
		if err != nil {
			failures = append(failures, seed+": "+flattenJoinError(err))
		}
	}
	if total > 0 {
		return total, nil
	}
	return 0, fmt.Errorf("%w: no seed answered (%s); check that the seeds run gojinn-node with gossip on that port, that UDP and TCP to it are open, and that every node has the same gossip key (or none)",
		ErrJoinFailed, strings.Join(failures, "; "))
}

// flattenJoinError turns memberlist's multi-line multierror into one line.
func flattenJoinError(err error) string {
	var msgs []string
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		for _, e := range w.WrappedErrors() {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return strings.Join(strings.Fields(err.Error()), " ")
	}
	return strings.Join(msgs, "; ")
}

// JoinNow joins through seeds now, without retrying, and returns how many
// seed addresses answered. It fails with ErrJoinFailed when none did.
func (m *Membership) JoinNow(ctx context.Context, seeds []string) (int, error) {
	if m.closed.Load() {
		return 0, ErrMembershipClosed
	}
	if len(seeds) == 0 {
		return 0, fmt.Errorf("gossip join: no seeds given: %w", ErrJoinFailed)
	}
	for _, s := range seeds {
		if err := validateSeed(s); err != nil {
			return 0, err
		}
	}
	return m.join(ctx, seeds)
}

// WaitJoin waits for StartMembership's background join to end and returns
// nil when it succeeded (or there were no seeds), or why it gave up. It
// returns ctx's error when ctx ends first.
func (m *Membership) WaitJoin(ctx context.Context) error {
	select {
	case <-m.joinDone:
		return m.joinErr
	case <-ctx.Done():
		return fmt.Errorf("gossip: still joining: %w", ctx.Err())
	}
}

// Members returns every member this node knows, itself included, sorted
// by name. A member that left stays listed (StatusLeft) for
// LeftMemberReapTime, one that died (StatusDead) for DeadMemberReapTime;
// a force-left member (ForceLeave) is not listed.
func (m *Membership) Members() []Member { return m.table.list() }

// RaftAddr returns the Raft address the member name (a node ID)
// announces over gossip, while gossip reports it alive.
func (m *Membership) RaftAddr(name string) (string, bool) { return m.table.raftAddr(name) }

// ForceLeave stops listing a member that is gone for good, here and, by a
// gossip broadcast, on every other node; a node that still sees it alive
// stops listing it once it is declared dead. It refuses this node and a
// member this node sees alive or leaving (*MemberAliveError). A name this
// node does not list is broadcast all the same (another node may list it)
// and reported as ErrMemberNotFound. A force-left node that comes back
// alive is listed again.
func (m *Membership) ForceLeave(name string) error {
	if m.closed.Load() {
		return ErrMembershipClosed
	}
	if validateNodeID(name) != nil {
		return fmt.Errorf("gossip force-leave %q: %w", name, ErrMemberNotFound)
	}
	listed, _, err := m.table.forget(name, false)
	if err != nil {
		return err
	}
	m.meta.queueForget(name)
	m.log.Info("gossip: force-left a member; every node stops listing it", "member", name, "was_listed", listed)
	if !listed {
		return fmt.Errorf("gossip force-leave %s: this node does not list it (the others were told): %w", name, ErrMemberNotFound)
	}
	return nil
}

// IdentityClashes returns the clashes with this node's identity gossip
// reported since the last call (at most 16 wait; more are dropped until
// then): another address announcing this node's name (its node ID), or a
// member announcing this node's Meta.Name. They are unconfirmed: see
// IdentityClash.
func (m *Membership) IdentityClashes() []IdentityClash { return m.table.takeClashes() }

// IdentityClashed receives a value (without blocking gossip) when a clash
// is recorded; read IdentityClashes then.
func (m *Membership) IdentityClashed() <-chan struct{} { return m.table.clashCh }

// Events delivers membership changes (join, update, leave, fail),
// including this node's own. The channel holds 256 events and never
// blocks gossip: when it is full the oldest event is dropped and counted
// by DroppedEvents, so a slow consumer sees the latest changes and should
// re-read Members after a drop. Shutdown closes it.
func (m *Membership) Events() <-chan MemberEvent { return m.table.events }

// DroppedEvents counts events dropped because Events was full.
func (m *Membership) DroppedEvents() uint64 { return m.table.dropped.Load() }

// UpdateMeta replaces the meta this node announces and broadcasts it. It
// waits up to 5 s for the broadcast to go out; after a timeout the new
// meta still reaches peers with later gossip.
func (m *Membership) UpdateMeta(meta NodeMeta) error {
	if err := validateMeta(meta); err != nil {
		return err
	}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if m.closed.Load() {
		return ErrMembershipClosed
	}
	enc := encodeMeta(meta, false)
	m.meta.meta.Store(&enc)
	m.curMeta = meta
	if !m.cfg.NameUnchecked {
		m.table.setSelfName(meta.Name)
	}
	if err := m.ml.UpdateNode(updateMetaTimeout); err != nil {
		return fmt.Errorf("gossip: meta changed here, but its broadcast did not finish in %v (%w); peers learn it with later gossip", updateMetaTimeout, err)
	}
	return nil
}

// Leave leaves the cluster gracefully: it announces the leave in this
// node's meta (so peers report it as left, not dead), then broadcasts
// memberlist's leave, waiting up to timeout in all (0: no bound) for both
// broadcasts to go out. It stops the background join. Gossip keeps
// running until Shutdown, which should follow. Calling it again is a
// no-op; after Shutdown it returns ErrMembershipClosed.
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shut {
		return ErrMembershipClosed
	}
	if m.left {
		return nil
	}
	m.left = true
	m.stop()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	m.metaMu.Lock()
	enc := encodeMeta(m.curMeta, true)
	m.meta.meta.Store(&enc)
	// The mark must go out before the leave itself: a peer that sees the
	// leave first reports the node dead.
	err := m.ml.UpdateNode(timeout / 2)
	m.metaMu.Unlock()
	if err != nil {
		m.log.Warn("gossip: the leave announcement did not finish going out; some peers may report this node dead", "err", err)
	}
	var rest time.Duration
	if !deadline.IsZero() {
		rest = max(time.Until(deadline), time.Millisecond)
	}
	if err := m.ml.Leave(rest); err != nil {
		return fmt.Errorf("gossip leave: %w (peers will detect the departure by probing and report the node dead)", err)
	}
	m.log.Info("gossip: left the cluster")
	return nil
}

// Shutdown stops gossip without announcing a leave (peers will report the
// node dead; call Leave first to leave gracefully), ends the join loop
// (waiting at most one seed's TCP timeout for an attempt in flight) and
// closes Events. It is idempotent.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shut {
		return nil
	}
	m.shut = true
	m.stop()
	err := m.ml.Shutdown()
	m.wg.Wait()
	m.table.close()
	if err != nil {
		return fmt.Errorf("gossip shutdown: %w", err)
	}
	m.log.Info("gossip stopped")
	return nil
}

// stop marks the membership closed and stops the join loop.
func (m *Membership) stop() {
	m.closed.Store(true)
	m.stopOnce.Do(func() { close(m.stopCh) })
}

// LocalAddr is the gossip host:port this node advertises to peers (the
// real port when BindAddr asked for port 0).
func (m *Membership) LocalAddr() string { return m.ml.LocalNode().Address() }

// NodeName is this node's name in the cluster.
func (m *Membership) NodeName() string { return m.cfg.NodeName }
