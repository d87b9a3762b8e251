package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// gossipTestWriter passes log lines to t.Log until the test ends; memberlist's
// goroutines may still log briefly after Shutdown returns, and t.Log after
// the end of a test panics.
type gossipTestWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *gossipTestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testGossipLogger logs at Warn and above into the test's output (Debug
// with -v is too noisy for five nodes).
func testGossipLogger(t testing.TB) *slog.Logger {
	w := &gossipTestWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testMembershipConfig is a fast loopback node named name.
func testMembershipConfig(t testing.TB, name string) MembershipConfig {
	return MembershipConfig{
		NodeName:            name,
		BindAddr:            "127.0.0.1:0",
		Profile:             ProfileLocal,
		Meta:                NodeMeta{Role: RoleServer, Region: "test", Version: "v0.0.0-test", RaftAddr: "127.0.0.1:7947", APIAddr: "127.0.0.1:8080"},
		RetryInterval:       50 * time.Millisecond,
		DeadNodeReclaimTime: 100 * time.Millisecond,
		Logger:              testGossipLogger(t),
	}
}

// startGossipNode starts a membership and shuts it down when the test ends.
func startGossipNode(t testing.TB, cfg MembershipConfig) *Membership {
	t.Helper()
	m, err := StartMembership(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartMembership(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// pollGossip polls cond every 20 ms until it returns nil or timeout passes.
func pollGossip(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gossipMemberOf returns name's status as m sees it, "" when unknown.
func gossipMemberOf(m *Membership, name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// expectGossipStatus is a pollGossip condition: every observer sees name in status.
func expectGossipStatus(observers []*Membership, name string, want MemberStatus) func() error {
	return func() error {
		for _, o := range observers {
			mem, ok := gossipMemberOf(o, name)
			if !ok || mem.Status != want {
				return fmt.Errorf("%s sees %s as %q (known %v), want %q", o.NodeName(), name, mem.Status, ok, want)
			}
		}
		return nil
	}
}

// expectGossipAlive is a pollGossip condition: every observer sees exactly names,
// all alive.
func expectGossipAlive(observers []*Membership, names ...string) func() error {
	return func() error {
		for _, o := range observers {
			var got []string
			for _, mem := range o.Members() {
				if mem.Status == StatusAlive {
					got = append(got, mem.Name)
				}
			}
			if strings.Join(got, ",") != strings.Join(names, ",") {
				return fmt.Errorf("%s sees alive %v, want %v", o.NodeName(), got, names)
			}
		}
		return nil
	}
}

func TestMembershipFiveNodesJoinOneSeed(t *testing.T) {
	start := time.Now()
	seed := startGossipNode(t, testMembershipConfig(t, "node-0"))
	nodes := []*Membership{seed}
	names := []string{"node-0"}
	for i := 1; i < 5; i++ {
		cfg := testMembershipConfig(t, fmt.Sprintf("node-%d", i))
		cfg.Meta.APIAddr = fmt.Sprintf("127.0.0.1:%d", 8080+i)
		cfg.Join = []string{seed.LocalAddr()}
		nodes = append(nodes, startGossipNode(t, cfg))
		names = append(names, cfg.NodeName)
	}
	for _, n := range nodes[1:] {
		if err := n.WaitJoin(t.Context()); err != nil {
			t.Fatalf("%s: WaitJoin: %v", n.NodeName(), err)
		}
	}
	pollGossip(t, 5*time.Second, "5 alive members on every node", expectGossipAlive(nodes, names...))
	t.Logf("5 nodes converged in %v", time.Since(start))

	for _, o := range nodes {
		for i, mem := range o.Members() {
			want := testMembershipConfig(t, names[i]).Meta
			want.APIAddr = fmt.Sprintf("127.0.0.1:%d", 8080+i)
			if mem.Meta != want {
				t.Errorf("%s sees %s meta %+v, want %+v", o.NodeName(), mem.Name, mem.Meta, want)
			}
			if mem.Addr != nodes[i].LocalAddr() {
				t.Errorf("%s sees %s at %s, want %s", o.NodeName(), mem.Name, mem.Addr, nodes[i].LocalAddr())
			}
		}
	}

	// A meta change reaches everyone, with an update event.
	newMeta := nodes[2].cfg.Meta
	newMeta.Version = "v0.0.1-test"
	if err := nodes[2].UpdateMeta(newMeta); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	pollGossip(t, 5*time.Second, "the new meta of node-2 everywhere", func() error {
		for _, o := range nodes {
			if mem, _ := gossipMemberOf(o, "node-2"); mem.Meta.Version != "v0.0.1-test" {
				return fmt.Errorf("%s sees node-2 version %q", o.NodeName(), mem.Meta.Version)
			}
		}
		return nil
	})
	pollGossip(t, 2*time.Second, "an update event for node-2 on node-0", func() error {
		for {
			select {
			case ev := <-seed.Events():
				if ev.Type == EventUpdate && ev.Member.Name == "node-2" && ev.Member.Meta.Version == "v0.0.1-test" {
					return nil
				}
			default:
				return errors.New("no such event yet")
			}
		}
	})
}

func TestMembershipJoinRetriesUntilSeedStarts(t *testing.T) {
	// Reserve a port for the seed, then free it so the joiner's first
	// attempts are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := l.Addr().String()
	_ = l.Close()

	cfg := testMembershipConfig(t, "late-joiner")
	cfg.Join = []string{seedAddr}
	joiner := startGossipNode(t, cfg)

	// Two failed attempts (so at least one backoff) before the seed starts.
	pollGossip(t, 2*time.Second, "two failed join attempts", func() error {
		select {
		case <-joiner.joinDone:
			t.Fatalf("the join loop ended early: %v", joiner.joinErr)
		default:
		}
		if n := joiner.attempts.Load(); n < 3 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	if n := len(joiner.Members()); n != 1 {
		t.Fatalf("joiner sees %d members before the seed exists", n)
	}

	seedCfg := testMembershipConfig(t, "late-seed")
	seedCfg.BindAddr = seedAddr
	var seed *Membership
	pollGossip(t, 3*time.Second, "the seed to bind its reserved port", func() error {
		m, err := StartMembership(t.Context(), seedCfg)
		if err != nil {
			return err
		}
		seed = m
		return nil
	})
	t.Cleanup(func() { _ = seed.Shutdown() })

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := joiner.WaitJoin(ctx); err != nil {
		t.Fatalf("WaitJoin: %v", err)
	}
	pollGossip(t, 3*time.Second, "both nodes alive on both", expectGossipAlive([]*Membership{joiner, seed}, "late-joiner", "late-seed"))
}

func TestMembershipJoinGivesUpAfterRetryMax(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	cfg := testMembershipConfig(t, "lonely")
	cfg.Join = []string{addr}
	cfg.RetryMax = 3
	cfg.RetryInterval = 10 * time.Millisecond
	m := startGossipNode(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err = m.WaitJoin(ctx)
	if !errors.Is(err, ErrJoinFailed) || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("WaitJoin = %v, want ErrJoinFailed after 3 attempts", err)
	}
	t.Logf("error: %v", err)
}

func TestMembershipEncryptedJoin(t *testing.T) {
	key1, key2 := mustGossipKey(t), mustGossipKey(t)
	seedCfg := testMembershipConfig(t, "enc-seed")
	seedCfg.SecretKey = key1
	seed := startGossipNode(t, seedCfg)

	// Wrong key: refused, with an error that names the key as a cause.
	wrongCfg := testMembershipConfig(t, "enc-wrong")
	wrongCfg.SecretKey = key2
	wrong := startGossipNode(t, wrongCfg)
	_, err := wrong.JoinNow(t.Context(), []string{seed.LocalAddr()})
	if !errors.Is(err, ErrJoinFailed) || !strings.Contains(err.Error(), "gossip key") {
		t.Fatalf("JoinNow with the wrong key = %v, want ErrJoinFailed naming the gossip key", err)
	}
	t.Logf("wrong key: %v", err)

	// No key at all: refused too, and an encrypted node cannot join an
	// unencrypted one.
	plain := startGossipNode(t, testMembershipConfig(t, "enc-plain"))
	_, err = plain.JoinNow(t.Context(), []string{seed.LocalAddr()})
	if !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("JoinNow without a key = %v, want ErrJoinFailed", err)
	}
	t.Logf("no key: %v", err)
	_, err = wrong.JoinNow(t.Context(), []string{plain.LocalAddr()})
	if !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("JoinNow of an encrypted node to a plain one = %v, want ErrJoinFailed", err)
	}
	t.Logf("key vs none: %v", err)

	// The right key joins.
	rightCfg := testMembershipConfig(t, "enc-right")
	rightCfg.SecretKey = key1
	right := startGossipNode(t, rightCfg)
	if n, err := right.JoinNow(t.Context(), []string{seed.LocalAddr()}); err != nil || n != 1 {
		t.Fatalf("JoinNow with the right key = %d, %v", n, err)
	}
	pollGossip(t, 3*time.Second, "the encrypted pair", expectGossipAlive([]*Membership{seed, right}, "enc-right", "enc-seed"))
	if _, ok := gossipMemberOf(seed, "enc-wrong"); ok {
		t.Error("the seed lists the node with the wrong key")
	}
	if _, ok := gossipMemberOf(seed, "enc-plain"); ok {
		t.Error("the seed lists the unencrypted node")
	}
}

func mustGossipKey(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseGossipKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMembershipGossipKeyRotation(t *testing.T) {
	oldKey, newKey, spare := mustGossipKey(t), mustGossipKey(t), mustGossipKey(t)
	var nodes []*Membership
	var names []string
	for i := range 3 {
		cfg := testMembershipConfig(t, fmt.Sprintf("rot-%d", i))
		cfg.SecretKey = oldKey
		if i > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, startGossipNode(t, cfg))
		names = append(names, cfg.NodeName)
	}
	alive := expectGossipAlive(nodes, names...)
	pollGossip(t, 5*time.Second, "3 encrypted members", alive)

	// Each round runs on every node before the next; membership must hold
	// after each.
	rounds := []struct {
		name string
		op   func(*Membership) error
	}{
		{"install new", func(m *Membership) error { return m.InstallKey(newKey) }},
		{"install spare", func(m *Membership) error { return m.InstallKey(spare) }},
		{"use new", func(m *Membership) error { return m.UseKey(newKey) }},
		{"remove old", func(m *Membership) error { return m.RemoveKey(oldKey) }},
		{"remove spare", func(m *Membership) error { return m.RemoveKey(spare) }},
	}
	for _, r := range rounds {
		for _, n := range nodes {
			if err := r.op(n); err != nil {
				t.Fatalf("%s on %s: %v", r.name, n.NodeName(), err)
			}
		}
		if err := alive(); err != nil {
			t.Fatalf("after %q: %v", r.name, err)
		}
	}
	if got, want := nodes[1].KeyFingerprints(), []string{keyFingerprint(newKey)}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("keyring after rotation = %v, want %v", got, want)
	}
	if err := nodes[0].RemoveKey(newKey); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	if err := nodes[0].UseKey(oldKey); err == nil {
		t.Fatal("UseKey of a removed key succeeded")
	}

	// Gossip really runs on the new key: a node with only the new key
	// joins, one with only the old key cannot.
	oldCfg := testMembershipConfig(t, "rot-old")
	oldCfg.SecretKey = oldKey
	if _, err := startGossipNode(t, oldCfg).JoinNow(t.Context(), []string{nodes[2].LocalAddr()}); !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("a node with the retired key joined: %v", err)
	}
	newCfg := testMembershipConfig(t, "rot-new")
	newCfg.SecretKey = newKey
	newCfg.Join = []string{nodes[2].LocalAddr()}
	late := startGossipNode(t, newCfg)
	pollGossip(t, 5*time.Second, "4 members on the new key", expectGossipAlive(append(nodes, late), "rot-0", "rot-1", "rot-2", "rot-new"))
}

func TestMembershipLeaveAndKill(t *testing.T) {
	var nodes []*Membership
	for i := range 4 {
		cfg := testMembershipConfig(t, fmt.Sprintf("lk-%d", i))
		if i > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, startGossipNode(t, cfg))
	}
	pollGossip(t, 5*time.Second, "4 members", expectGossipAlive(nodes, "lk-0", "lk-1", "lk-2", "lk-3"))
	rest := nodes[:2]

	start := time.Now()
	if err := nodes[3].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[3].Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	pollGossip(t, 5*time.Second, "lk-3 left", expectGossipStatus(rest, "lk-3", StatusLeft))
	t.Logf("leave seen as left in %v", time.Since(start))
	if err := nodes[3].Shutdown(); err != nil {
		t.Fatalf("Shutdown after Leave: %v", err)
	}
	if _, err := nodes[3].JoinNow(t.Context(), []string{nodes[0].LocalAddr()}); !errors.Is(err, ErrMembershipClosed) {
		t.Fatalf("JoinNow after Shutdown = %v, want ErrMembershipClosed", err)
	}

	start = time.Now()
	if err := nodes[2].Shutdown(); err != nil { // killed: no Leave
		t.Fatalf("Shutdown: %v", err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	pollGossip(t, 10*time.Second, "lk-2 dead", expectGossipStatus(rest, "lk-2", StatusDead))
	t.Logf("kill seen as dead in %v", time.Since(start))
	if err := expectGossipStatus(rest, "lk-3", StatusLeft)(); err != nil {
		t.Errorf("the left node changed status: %v", err)
	}

	// The events tell the same story, in order for each member.
	var got []string
	for drained := false; !drained; {
		select {
		case ev := <-nodes[0].Events():
			if ev.Member.Name == "lk-2" || ev.Member.Name == "lk-3" {
				got = append(got, fmt.Sprintf("%s:%s/%s", ev.Member.Name, ev.Type, ev.Member.Status))
			}
		default:
			drained = true
		}
	}
	joined := strings.Join(got, " ")
	leaving, left := strings.Index(joined, "lk-3:update/leaving"), strings.Index(joined, "lk-3:leave/left")
	if leaving < 0 || left < leaving || !strings.Contains(joined, "lk-2:fail/dead") {
		t.Errorf("events %q: want lk-3:update/leaving, then lk-3:leave/left, and lk-2:fail/dead", joined)
	}
}

func TestMembershipRestartWithNewAddress(t *testing.T) {
	var nodes []*Membership
	for i := range 3 {
		cfg := testMembershipConfig(t, fmt.Sprintf("rs-%d", i))
		if i > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, startGossipNode(t, cfg))
	}
	pollGossip(t, 5*time.Second, "3 members", expectGossipAlive(nodes, "rs-0", "rs-1", "rs-2"))
	oldAddr := nodes[2].LocalAddr()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	pollGossip(t, 10*time.Second, "rs-2 dead", expectGossipStatus(nodes[:2], "rs-2", StatusDead))
	// memberlist refuses the name from a new address until it has been
	// dead for DeadNodeReclaimTime (with 0, forever); an earlier attempt
	// would get in only at the next push/pull. That wait is the behaviour
	// under test, so the test waits for it.
	deadAt := time.Now()
	pollGossip(t, time.Second, "DeadNodeReclaimTime to pass", func() error {
		if since := time.Since(deadAt); since <= nodes[0].cfg.DeadNodeReclaimTime {
			return fmt.Errorf("dead for %v", since)
		}
		return nil
	})

	// Same name, new port (127.0.0.1:0 picks another one).
	cfg := testMembershipConfig(t, "rs-2")
	cfg.Join = []string{nodes[0].LocalAddr()}
	again := startGossipNode(t, cfg)
	if again.LocalAddr() == oldAddr {
		t.Fatalf("the restarted node got its old address %s again", oldAddr)
	}
	all := []*Membership{nodes[0], nodes[1], again}
	pollGossip(t, 5*time.Second, "rs-2 back under its new address", func() error {
		if err := expectGossipAlive(all, "rs-0", "rs-1", "rs-2")(); err != nil {
			return err
		}
		for _, o := range all {
			if mem, _ := gossipMemberOf(o, "rs-2"); mem.Addr != again.LocalAddr() {
				return fmt.Errorf("%s sees rs-2 at %s", o.NodeName(), mem.Addr)
			}
		}
		return nil
	})
}

func TestMembershipMetaTooLarge(t *testing.T) {
	cfg := testMembershipConfig(t, "big")
	cfg.Meta.Region = strings.Repeat("r", 600)
	if _, err := StartMembership(t.Context(), cfg); !errors.Is(err, ErrMetaTooLarge) || !strings.Contains(err.Error(), "512") {
		t.Fatalf("StartMembership with 600-byte meta = %v, want ErrMetaTooLarge naming the limit", err)
	}

	m := startGossipNode(t, testMembershipConfig(t, "small"))
	big := m.cfg.Meta
	big.APIAddr = strings.Repeat("a", 500)
	err := m.UpdateMeta(big)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta with 500-byte address = %v, want ErrMetaTooLarge", err)
	}
	t.Logf("error: %v", err)
	if mem, _ := gossipMemberOf(m, "small"); mem.Meta != m.cfg.Meta {
		t.Fatalf("a refused meta changed the announced one: %+v", mem.Meta)
	}
}

func TestMembershipNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	var nodes []*Membership
	for i := range 3 {
		cfg := testMembershipConfig(t, fmt.Sprintf("leak-%d", i))
		cfg.SecretKey = mustGossipKey(t)
		if i > 0 {
			cfg.SecretKey = nodes[0].cfg.SecretKey
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		m, err := StartMembership(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, m)
	}
	pollGossip(t, 5*time.Second, "3 members", expectGossipAlive(nodes, "leak-0", "leak-1", "leak-2"))

	// A join loop that never succeeds must end with Shutdown too.
	stuckCfg := testMembershipConfig(t, "leak-stuck")
	stuckCfg.Join = []string{"127.0.0.1:1"}
	stuck, err := StartMembership(t.Context(), stuckCfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, stuck)

	if err := nodes[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
		for range n.Events() { // Shutdown closed it; drain what was queued
		}
	}
	pollGossip(t, 5*time.Second, "goroutines back to the baseline", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
	if err := stuck.WaitJoin(t.Context()); !errors.Is(err, ErrMembershipClosed) {
		t.Fatalf("WaitJoin of the stopped join loop = %v, want ErrMembershipClosed", err)
	}
}

func TestMembershipJoinBackoff(t *testing.T) {
	for _, tt := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 5, 16 * time.Second},
		{time.Second, 6, 30 * time.Second},
		{time.Second, 1000, 30 * time.Second},
		{50 * time.Millisecond, 3, 200 * time.Millisecond},
		{time.Minute, 4, time.Minute},
	} {
		if got := joinBackoff(tt.base, tt.attempt); got != tt.want {
			t.Errorf("joinBackoff(%v, %d) = %v, want %v", tt.base, tt.attempt, got, tt.want)
		}
	}
}

func TestGossipEventsDropOldest(t *testing.T) {
	tab := newMemberTable(testGossipLogger(t))
	const extra = 44
	for i := range eventBuffer + extra {
		tab.mu.Lock()
		tab.sendLocked(MemberEvent{Type: EventUpdate, Member: Member{Name: fmt.Sprint(i)}})
		tab.mu.Unlock()
	}
	if got := tab.dropped.Load(); got != extra {
		t.Fatalf("dropped %d, want %d", got, extra)
	}
	tab.close()
	tab.mu.Lock()
	tab.sendLocked(MemberEvent{Type: EventJoin}) // after close: dropped silently, no panic
	tab.mu.Unlock()
	var names []string
	for ev := range tab.events {
		names = append(names, ev.Member.Name)
	}
	if len(names) != eventBuffer || names[0] != fmt.Sprint(extra) || names[len(names)-1] != fmt.Sprint(eventBuffer+extra-1) {
		t.Fatalf("kept %d events from %s to %s; want the newest %d", len(names), names[0], names[len(names)-1], eventBuffer)
	}
}

func TestMembershipJoinNowSeeds(t *testing.T) {
	seed := startGossipNode(t, testMembershipConfig(t, "js-seed"))
	m := startGossipNode(t, testMembershipConfig(t, "js-node"))

	// A dead seed next to a live one: the join succeeds through the live one.
	if n, err := m.JoinNow(t.Context(), []string{"127.0.0.1:1", seed.LocalAddr()}); err != nil || n != 1 {
		t.Fatalf("JoinNow(dead, live) = %d, %v; want 1, nil", n, err)
	}
	pollGossip(t, 3*time.Second, "the pair", expectGossipAlive([]*Membership{seed, m}, "js-node", "js-seed"))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.JoinNow(ctx, []string{seed.LocalAddr()}); !errors.Is(err, ErrJoinFailed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("JoinNow with a canceled context = %v", err)
	}
	for _, bad := range [][]string{nil, {""}, {"a b"}} {
		if _, err := m.JoinNow(t.Context(), bad); err == nil {
			t.Errorf("JoinNow(%q) succeeded", bad)
		}
	}
}
