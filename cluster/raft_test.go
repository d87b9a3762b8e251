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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/gojinn/gojinn/storage"
)

// raftLog collects a test node's logs; they are printed only when the
// test fails, so raft goroutines never write to a finished test.
type raftLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *raftLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *raftLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testConfig is FastConfig on dir with a logger that is shown on failure.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	logs := &raftLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", logs)
		}
	})
	c := FastConfig()
	c.DataDir = dir
	c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// putModule stores a fake module in s's blob store and returns a spec for
// it.
func putModule(t *testing.T, s *Store, tag string) storage.Spec {
	t.Helper()
	data := []byte("\x00asm\x01\x00\x00\x00" + tag)
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if _, err := s.Blobs().Put(sha, bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	return storage.Spec{
		SHA256: sha,
		Mode:   storage.ModePooled,
		Env:    map[string]string{"SECRET": "hunter2-" + tag},
		Routes: []storage.Route{{Host: "example.com", Path: "/" + tag}},
	}
}

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := OpenStore(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStoreReopenTCP runs the whole path on a real TCP transport and real
// BoltDB files: deploy three versions, roll back, close, reopen from the
// same directory on a new port and find the same registry.
func TestStoreReopenTCP(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	s := openStore(t, cfg)
	ctx := testCtx(t)

	if !s.Node().IsLeader() {
		t.Fatal("a single-voter node is not leader after Open")
	}
	firstAddr := s.Node().Addr()
	if strings.HasSuffix(firstAddr, ":0") || !strings.HasPrefix(firstAddr, "127.0.0.1:") {
		t.Fatalf("advertised address %q: want 127.0.0.1 and the real port", firstAddr)
	}
	for i := 1; i <= 3; i++ {
		v, err := s.Deploy(ctx, "hello", putModule(t, s, fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if v.Version != int64(i) || v.Size == 0 || v.DeployedAt.IsZero() {
			t.Fatalf("deploy %d returned %+v", i, v)
		}
	}
	v, err := s.Rollback(ctx, "hello", 0)
	if err != nil || v.Version != 2 {
		t.Fatalf("rollback to previous = %d, %v; want 2", v.Version, err)
	}
	if _, err := s.Deploy(ctx, "other", putModule(t, s, "o")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if st.RaftState != "Leader" || st.Leader != firstAddr || st.Voters != 1 || st.Functions != 1 ||
		st.NodeID == "" || st.Term == 0 || st.AppliedIndex < st.CommitIndex-1 || st.StartedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	before := encodeState(t, s.State())
	id := s.Node().ID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2 := openStore(t, testConfig(t, dir))
	if s2.Node().ID() != id {
		t.Fatalf("node ID changed across restart: %s -> %s", id, s2.Node().ID())
	}
	if got := encodeState(t, s2.State()); got != before {
		t.Fatalf("state after reopen differs:\nbefore %s\nafter  %s", before, got)
	}
	f, ok := s2.Function("hello")
	if !ok || f.Active != 2 || len(f.Versions) != 3 {
		t.Fatalf("after reopen hello = %+v", f)
	}
	// The configuration learned the new port.
	cf := s2.Node().raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	servers := cf.Configuration().Servers
	if len(servers) != 1 || string(servers[0].Address) != s2.Node().Addr() {
		t.Fatalf("configuration %+v; want only this node at %s", servers, s2.Node().Addr())
	}
	if st := s2.Status(); st.Leader != s2.Node().Addr() {
		t.Fatalf("leader %q, want %q", st.Leader, s2.Node().Addr())
	}
	// Numbering carries on, also for the removed name.
	if v, err := s2.Deploy(ctx, "hello", putModule(t, s2, "4")); err != nil || v.Version != 4 {
		t.Fatalf("deploy after reopen = %d, %v; want 4", v.Version, err)
	}
	if v, err := s2.Deploy(ctx, "other", putModule(t, s2, "o")); err != nil || v.Version != 2 {
		t.Fatalf("redeploy of a removed name = %d, %v; want 2", v.Version, err)
	}
}

func encodeState(t *testing.T, st *storage.State) string {
	t.Helper()
	var b bytes.Buffer
	if err := st.Encode(&b); err != nil {
		t.Fatal(err)
	}
	// The index moves with raft's own entries (barriers, configuration),
	// not with registry commands alone; compare the registry.
	_, rest, _ := strings.Cut(b.String(), "\n")
	return rest
}

// inmemConfig is testConfig on an in-memory transport.
func inmemConfig(t *testing.T, dir string) Config {
	c := testConfig(t, dir)
	_, trans := raft.NewInmemTransport("")
	c.Transport = trans
	return c
}

// TestStoreSnapshotAndTruncation takes a snapshot, checks raft dropped the
// log behind it, and reopens from snapshot plus the remaining log.
func TestStoreSnapshotAndTruncation(t *testing.T) {
	dir := t.TempDir()
	cfg := inmemConfig(t, dir)
	cfg.TrailingLogs = 1
	s := openStore(t, cfg)
	ctx := testCtx(t)
	for i := 1; i <= 5; i++ {
		if _, err := s.Deploy(ctx, "fn", putModule(t, s, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Rollback(ctx, "fn", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	first, err := s.Node().bolt.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Fatalf("log starts at %d after a snapshot with TrailingLogs 1: not truncated", first)
	}
	// Entries after the snapshot are replayed from the log on reopen.
	if _, err := s.Deploy(ctx, "fn", putModule(t, s, "6")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deploy(ctx, "second", putModule(t, s, "x")); err != nil {
		t.Fatal(err)
	}
	before := encodeState(t, s.State())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot on disk")
	}

	s2 := openStore(t, inmemConfig(t, dir))
	if got := encodeState(t, s2.State()); got != before {
		t.Fatalf("state after reopen differs:\nbefore %s\nafter  %s", before, got)
	}
	if v, err := s2.Rollback(ctx, "fn", 0); err != nil || v.Version != 2 {
		t.Fatalf("rollback after reopen = %d, %v; want 2 (history survives the snapshot)", v.Version, err)
	}
}

// TestStoreAutomaticSnapshot sets a low SnapshotThreshold and waits for raft
// to snapshot on its own.
func TestStoreAutomaticSnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := inmemConfig(t, dir)
	cfg.SnapshotThreshold = 4
	cfg.SnapshotInterval = 20 * time.Millisecond
	cfg.TrailingLogs = 2
	s := openStore(t, cfg)
	ctx := testCtx(t)
	spec := putModule(t, s, "m")
	for i := 0; i < 10; i++ {
		if _, err := s.Deploy(ctx, "fn", spec); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "an automatic snapshot and log truncation", func() bool {
		first, err := s.Node().bolt.FirstIndex()
		return err == nil && first > 1
	})
	before := encodeState(t, s.State())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, inmemConfig(t, dir))
	if got := encodeState(t, s2.State()); got != before {
		t.Fatalf("state after reopen differs:\nbefore %s\nafter  %s", before, got)
	}
}

func TestStoreErrors(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	spec := putModule(t, s, "1")
	missing := spec
	missing.SHA256 = strings.Repeat("0", 64)
	wrongSize := spec
	wrongSize.Size = 3
	badMode := spec
	badMode.Mode = "warp"

	for _, tt := range []struct {
		what string
		err  error
		want error
	}{
		{"deploy of a missing blob", deployErr(s, ctx, "fn", missing), storage.ErrBlobNotFound},
		{"deploy with a wrong size", deployErr(s, ctx, "fn", wrongSize), storage.ErrInvalid},
		{"deploy with a bad mode", deployErr(s, ctx, "fn", badMode), storage.ErrInvalid},
		{"deploy under a bad name", deployErr(s, ctx, "Fn!", spec), storage.ErrInvalid},
		{"deploy with a bad sha", deployErr(s, ctx, "fn", storage.Spec{SHA256: "xyz"}), storage.ErrInvalid},
		{"rollback of a missing function", rollbackErr(s, ctx, "nope", 1), storage.ErrFunctionNotFound},
		{"remove of a missing function", s.Remove(ctx, "nope"), storage.ErrFunctionNotFound},
		{"rollback to a negative version", rollbackErr(s, ctx, "nope", -1), storage.ErrInvalid},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.what, tt.err, tt.want)
		}
	}
	if _, err := s.Deploy(ctx, "fn", spec); err != nil {
		t.Fatal(err)
	}
	if err := rollbackErr(s, ctx, "fn", 0); !errors.Is(err, storage.ErrVersionNotFound) {
		t.Errorf("rollback with no previous version: %v", err)
	}
	if err := rollbackErr(s, ctx, "fn", 9); !errors.Is(err, storage.ErrVersionNotFound) {
		t.Errorf("rollback to an unknown version: %v", err)
	}
	// Nothing above changed the registry but the one deploy.
	if f, _ := s.Function("fn"); len(s.Functions()) != 1 || f.Active != 1 {
		t.Fatalf("registry after errors: %+v", s.Functions())
	}
	// Secrets stay out of errors.
	if err := deployErr(s, ctx, "fn", badMode); strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows an env value: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := deployErr(s, cctx, "fn", spec); !errors.Is(err, context.Canceled) {
		t.Errorf("deploy with a canceled context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := deployErr(s, ctx, "fn", spec)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("deploy after Close: %v, want ErrUnavailable", err)
	}
}

func deployErr(s *Store, ctx context.Context, name string, spec storage.Spec) error {
	_, err := s.Deploy(ctx, name, spec)
	return err
}

func rollbackErr(s *Store, ctx context.Context, name string, to int64) error {
	_, err := s.Rollback(ctx, name, to)
	return err
}

func TestStoreSubscribe(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	ctx := testCtx(t)
	ch, unsub := s.Subscribe()
	defer unsub()
	// Drain what Open's replay may have sent.
	select {
	case <-ch:
	default:
	}
	spec := putModule(t, s, "1")
	done := make(chan error, 1)
	go func() {
		_, err := s.Deploy(ctx, "fn", spec)
		done <- err
	}()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatal("Subscribe did not fire after a deploy")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := s.State().Function("fn"); !ok {
		t.Fatal("State does not show the deploy")
	}
}

// TestNodeApplyRaw drives a Node with a plain FSM of our own.
func TestNodeApplyRaw(t *testing.T) {
	fsm := storage.NewRegistry()
	cfg := inmemConfig(t, t.TempDir())
	cfg.FSM = fsm
	n, err := Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	resp, err := n.Apply(testCtx(t), []byte("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	res, ok := resp.(storage.ApplyResult)
	if !ok || !errors.Is(res.Err, storage.ErrInvalid) {
		t.Fatalf("Apply(garbage) = %#v", resp)
	}
	if fsm.State().Index() == 0 {
		t.Fatal("a rejected command did not advance the index")
	}
	addr, id := n.Leader()
	if addr != n.Addr() || id != n.ID() {
		t.Fatalf("Leader() = %s %s; want %s %s", addr, id, n.Addr(), n.ID())
	}
}

// TestCloseBoundedWhenAFutureIsNeverAnswered: hashicorp/raft v1.7.3 can
// leave a future unanswered when it sits in the FSM queue at the instant
// of shutdown. A waiter that never ends (standing in for one, as the race
// cannot be provoked on demand) must not make Close hang: it returns after
// appliesWaitTimeout with an error saying so, and the node is closed.
func TestCloseBoundedWhenAFutureIsNeverAnswered(t *testing.T) {
	defer func(d time.Duration) { appliesWaitTimeout = d }(appliesWaitTimeout)
	appliesWaitTimeout = 200 * time.Millisecond
	cfg := inmemConfig(t, t.TempDir())
	cfg.FSM = storage.NewRegistry()
	n, err := Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.applies.Add(1) // a waiter raft never answers
	defer n.applies.Done()
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "unanswered") {
			t.Fatalf("Close with an unanswered proposal: %v, want an error saying proposals were left unanswered", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on a proposal raft never answered")
	}
	if _, err := n.Apply(testCtx(t), []byte("garbage")); err == nil {
		t.Fatal("Apply after Close succeeded")
	}
}

func TestNodeNotLeaderError(t *testing.T) {
	e := &NotLeaderError{LeaderAddr: "10.0.0.1:7947", LeaderID: "n1"}
	err := fmt.Errorf("deploy %q: %w", "fn", e)
	for _, target := range []error{ErrNotLeader, ErrUnavailable, raft.ErrNotLeader} {
		if !errors.Is(err, target) {
			t.Errorf("not errors.Is %v", target)
		}
	}
	if errors.Is(err, raft.ErrLeadershipLost) {
		t.Error("matches ErrLeadershipLost without Lost")
	}
	if !strings.Contains(err.Error(), "10.0.0.1:7947") {
		t.Errorf("message does not name the leader: %v", err)
	}
	var nl *NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderID != "n1" {
		t.Error("errors.As does not find the leader")
	}
	lost := &NotLeaderError{Lost: true}
	if !errors.Is(lost, raft.ErrLeadershipLost) || errors.Is(lost, raft.ErrNotLeader) || !strings.Contains(lost.Error(), "may or may not") {
		t.Errorf("lost leadership: %v", lost)
	}
	if none := (&NotLeaderError{}).Error(); !strings.Contains(none, "no leader") {
		t.Errorf("no leader: %s", none)
	}
}

func TestNodeID(t *testing.T) {
	dir := t.TempDir()
	cfg := inmemConfig(t, dir)
	cfg.FSM = storage.NewRegistry()
	cfg.NodeID = "edge-1"
	n, err := Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID() != "edge-1" {
		t.Fatalf("ID = %s", n.ID())
	}
	n.Close()
	b, err := os.ReadFile(filepath.Join(dir, "node-id"))
	if err != nil || strings.TrimSpace(string(b)) != "edge-1" {
		t.Fatalf("node-id file = %q, %v", b, err)
	}
	cfg = inmemConfig(t, dir)
	cfg.FSM = storage.NewRegistry()
	cfg.NodeID = "edge-2"
	if _, err := Open(testCtx(t), cfg); err == nil || !strings.Contains(err.Error(), "edge-1") {
		t.Fatalf("Open with another NodeID: %v", err)
	}

	// A generated ID is stable.
	dir = t.TempDir()
	var ids []string
	for range 2 {
		cfg = inmemConfig(t, dir)
		cfg.FSM = storage.NewRegistry()
		n, err := Open(testCtx(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.ID())
		n.Close()
	}
	if ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("generated IDs %v", ids)
	}
}

func TestOpenLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, inmemConfig(t, dir))
	_ = s
	_, err := OpenStore(testCtx(t), inmemConfig(t, dir))
	if err == nil || !strings.Contains(err.Error(), "another gojinn-node") {
		t.Fatalf("second Open of a data directory in use: %v", err)
	}
}

func TestOpenWithoutQuorum(t *testing.T) {
	// A data directory whose configuration names a second voter that never
	// answers cannot elect a leader. Open does not wait for one (the node
	// serves local reads and catches up once a leader exists), and writes
	// fail with a clear ErrUnavailable instead of hanging.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o750); err != nil {
		t.Fatal(err)
	}
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "raft"), 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	addr, trans := raft.NewInmemTransport("")
	err = raft.BootstrapCluster(rc, bolt, bolt, snaps, trans, raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: addr},
		{Suffrage: raft.Voter, ID: "ghost", Address: "ghost-addr"},
	}})
	bolt.Close()
	if err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second round proves the first closed everything
		cfg := inmemConfig(t, dir)
		cfg.FSM = storage.NewRegistry()
		n, err := Open(testCtx(t), cfg)
		if err != nil {
			t.Fatalf("Open without a quorum: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = n.Apply(ctx, []byte("{}"))
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Apply without a quorum: %v, want ErrUnavailable", err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := FastConfig()
	base.DataDir = "/tmp/x"
	base.FSM = storage.NewRegistry()
	if err := base.Validate(); err != nil {
		t.Fatalf("FastConfig: %v", err)
	}
	d := DefaultConfig()
	d.DataDir, d.FSM = "/tmp/x", base.FSM
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if (Config{DataDir: "/tmp/x", FSM: base.FSM}).Validate() != nil {
		t.Fatal("zero fields must take defaults")
	}
	for _, tt := range []struct {
		mut  func(c *Config)
		want string
	}{
		{func(c *Config) { c.DataDir = "" }, "DataDir"},
		{func(c *Config) { c.FSM = nil }, "FSM"},
		{func(c *Config) { c.NodeID = "has space" }, "NodeID"},
		{func(c *Config) { c.RaftBind = "nohost" }, "RaftBind"},
		{func(c *Config) { c.RaftBind = "0.0.0.0:7947" }, "RaftAdvertise"},
		{func(c *Config) { c.RaftBind = ":7947" }, "RaftAdvertise"},
		{func(c *Config) { c.RaftAdvertise = "10.0.0.1:0" }, "RaftAdvertise"},
		{func(c *Config) { c.HeartbeatTimeout = time.Millisecond }, "HeartbeatTimeout"},
		{func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "LeaderLeaseTimeout"},
		{func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "ElectionTimeout"},
		{func(c *Config) { c.ApplyTimeout = -1 }, "ApplyTimeout"},
		{func(c *Config) { c.CommitTimeout = time.Microsecond }, "CommitTimeout"},
	} {
		c := base
		tt.mut(&c)
		err := c.Validate()
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate: %v; want ErrInvalid naming %s", err, tt.want)
		}
	}
	c := base
	c.RaftBind = "0.0.0.0:7947"
	c.RaftAdvertise = "10.0.0.1:7947"
	if err := c.Validate(); err != nil {
		t.Errorf("bind on every address with an advertise address: %v", err)
	}
	rc, err := base.withDefaults().raftConfig("n1")
	if err != nil || rc.CommitTimeout != DefaultCommitTimeout {
		t.Errorf("raft's CommitTimeout %v (%v), want %v", rc.CommitTimeout, err, DefaultCommitTimeout)
	}
	if _, err := OpenStore(testCtx(t), base); err == nil {
		t.Error("OpenStore accepted a config with an FSM")
	}
}
