package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startAgentConfig starts an agent over dir with the settings
// startTestAgent uses, edited by edit (nil: none), and closes it when the
// test ends. It has no reconciler: these tests look at membership only.
func startAgentConfig(t *testing.T, dir string, edit func(*AgentConfig)) *Agent {
	t.Helper()
	cfg := agentConfigFor(t, dir)
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := StartAgent(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// agentConfigFor is startTestAgent's configuration over dir.
func agentConfigFor(t *testing.T, dir string) AgentConfig {
	rc := testConfig(t, dir)
	return AgentConfig{
		Raft: rc, PeerListen: "127.0.0.1:0", GossipBind: "127.0.0.1:0", Profile: "local", Version: "test",
		Autopilot: AutopilotConfig{DeadServerTimeout: 2 * time.Second, Interval: 100 * time.Millisecond},
		Logger:    rc.Logger,
	}
}

// msgCounter counts the log records whose message contains msg (the
// agent's own words, e.g. "enrollment failed; retrying"), to see an event
// that leaves no other trace, and passes every record on.
type msgCounter struct {
	slog.Handler
	msg string
	n   *atomic.Int32
}

func (h msgCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h msgCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return msgCounter{h.Handler.WithAttrs(as), h.msg, h.n}
}

func (h msgCounter) WithGroup(name string) slog.Handler {
	return msgCounter{h.Handler.WithGroup(name), h.msg, h.n}
}

// A node whose only seed is not up yet keeps trying to enroll, and joins
// once the seed starts on that address seconds later, within
// JoinRetryMax and without being restarted. (The opposite, a seed that
// never comes, is TestAgentEnrollRetriesThenGivesUp's.)
func TestAgentJoinsASeedThatStartsLate(t *testing.T) {
	// The join token is minted when the seed bootstraps, so the seed's
	// data directory is bootstrapped once on another port; the seed that
	// starts late is that node restarting, the cluster's only server.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seedDir := t.TempDir()
	boot, err := StartAgent(ctx, agentConfigFor(t, seedDir))
	if err != nil {
		t.Fatal(err)
	}
	token := boot.JoinTokenCreated
	boot.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}

	const retryMax = 5 // rounds at 0, 0.5, 1.5, 3.5 and 7.5 s
	cfg := agentConfigFor(t, t.TempDir())
	cfg.Join, cfg.JoinToken, cfg.JoinRetryMax = []string{seedAddr}, token, retryMax
	var failed atomic.Int32
	cfg.Logger = slog.New(msgCounter{cfg.Logger.Handler(), "enrollment failed; retrying", &failed})
	type started struct {
		a   *Agent
		err error
	}
	done := make(chan started, 1)
	go func() {
		a, err := StartAgent(ctx, cfg)
		done <- started{a, err}
	}()
	t.Cleanup(func() {
		// StartAgent's result, unless the test took it (and closed done).
		if r, ok := <-done; ok && r.a != nil {
			r.a.Close()
		}
	})

	// Three rounds fail on the closed port (the third 1.5 s in); the
	// seed starts then, and the fourth round, 2 s later, finds it.
	waitFor(t, 10*time.Second, "three failed enrollment rounds", func() bool { return failed.Load() >= 3 })
	select {
	case r := <-done:
		close(done)
		if r.a != nil {
			r.a.Close()
		}
		t.Fatalf("StartAgent returned before any seed listened at %s: %v", seedAddr, r.err)
	default:
	}
	seed := startAgentConfig(t, seedDir, func(c *AgentConfig) { c.PeerListen = seedAddr })
	if seed.PeerAddr() != seedAddr {
		t.Fatalf("the seed listens at %s, not %s", seed.PeerAddr(), seedAddr)
	}

	var r started
	select {
	case r = <-done:
		close(done)
		if r.a != nil {
			t.Cleanup(r.a.Close)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("StartAgent has not returned 30 s after the seed started (%d rounds failed)", failed.Load())
	}
	if r.err != nil {
		t.Fatalf("the joiner gave up although the seed started at %s: %v", seedAddr, r.err)
	}
	joiner := r.a
	if n := failed.Load(); n < 3 || n >= retryMax {
		t.Fatalf("%d enrollment rounds failed; want 3 before the seed started and fewer than JoinRetryMax (%d)", n, retryMax)
	}
	id := joiner.Store().Node().ID()
	waitFor(t, 30*time.Second, "the joiner as a voter of the seed's cluster, alive in gossip", func() bool {
		servers, err := seed.Store().Node().Servers()
		if err != nil || len(servers) != 2 {
			return false
		}
		voter := false
		for _, s := range servers {
			voter = voter || s.ID == id && s.Voter && s.Addr == joiner.Store().Node().Addr()
		}
		alive := 0
		for _, m := range seed.Members() {
			if m.Status == StatusAlive {
				alive++
			}
		}
		return voter && alive == 2
	})
	// The joiner replicates the seed's log: it knows the leader.
	waitFor(t, 10*time.Second, "the joiner to know the seed as leader", func() bool {
		_, leader := joiner.Store().Node().Leader()
		return leader == seed.Store().Node().ID()
	})
}

// With MaxVoters 5, six servers make five voters and one non-voter: the
// first five to join vote from the start (no autopilot promotion was
// needed), the sixth does not, and the autopilot promotes no one past
// five.
func TestAgentsMaxVotersFive(t *testing.T) {
	var promoted atomic.Int32
	five := func(c *AgentConfig) {
		c.Autopilot.MaxVoters = 5
		c.Logger = slog.New(msgCounter{c.Logger.Handler(), "promoting a healthy non-voter", &promoted})
	}
	first := startAgentConfig(t, t.TempDir(), five)
	agents := []*Agent{first}
	for len(agents) < 6 {
		a := startAgentConfig(t, t.TempDir(), func(c *AgentConfig) {
			five(c)
			c.Join, c.JoinToken = []string{first.PeerAddr()}, first.JoinTokenCreated
		})
		agents = append(agents, a)
		// One join at a time, so which one votes is known.
		id := a.Store().Node().ID()
		waitFor(t, 30*time.Second, fmt.Sprintf("agent %d in the configuration", len(agents)), func() bool {
			servers, err := first.Store().Node().Servers()
			if err != nil {
				return false
			}
			for _, s := range servers {
				if s.ID == id {
					return true
				}
			}
			return false
		})
	}
	if n := promoted.Load(); n != 0 {
		t.Fatalf("the autopilot promoted %d non-voters while five voters or fewer joined; each should have joined as a voter", n)
	}
	sixth := agents[5].Store().Node().ID()
	for i, a := range agents {
		waitFor(t, 30*time.Second, fmt.Sprintf("agent %d to see 5 voters and the sixth agent as the non-voter", i+1), func() bool {
			servers, err := a.Store().Node().Servers()
			if err != nil || len(servers) != 6 {
				return false
			}
			voters := 0
			for _, s := range servers {
				if s.Voter {
					voters++
				} else if s.ID != sixth {
					return false
				}
			}
			return voters == 5
		})
	}
	// The autopilot checks every 100 ms; a few passes later the leader
	// still has five voters (a promotion would make six).
	l := leaderAgent(t, agents)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range 10 {
		<-tick.C
		servers, voters := configuration(t, l.Store().Node())
		if voters != 5 || len(servers) != 6 {
			t.Fatalf("the leader's configuration changed to %d voters of %d servers: %+v", voters, len(servers), servers)
		}
	}
	if n := promoted.Load(); n != 0 {
		t.Fatalf("the autopilot promoted %d non-voters", n)
	}
}

// leaderAgent waits for one of agents to lead and returns it.
func leaderAgent(t *testing.T, agents []*Agent) *Agent {
	t.Helper()
	return leaderAgentWithin(t, agents, 10*time.Second)
}

// leaderAgentWithin is leaderAgent waiting up to d.
func leaderAgentWithin(t *testing.T, agents []*Agent, d time.Duration) *Agent {
	t.Helper()
	var l *Agent
	waitFor(t, d, "a leader", func() bool {
		for _, a := range agents {
			if a.Store().Node().IsLeader() {
				l = a
				return true
			}
		}
		return false
	})
	return l
}
