//go:build linux

package cluster

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// A member whose packets are dropped neither holds the whole wait nor
// hides the others: while gossip still lists it alive, the wait ends
// with its context and names that member alone, with why (no answer);
// once gossip declares it dead, the wait stops waiting for it and
// succeeds at once, long before its deadline. (The sequential wait asked
// the cut member first or last and spent the whole deadline dialling it:
// it named no reason, or named healthy members "unasked", and it never
// noticed the member go dead.)
func TestWaitServablePartitionedMember(t *testing.T) {
	first := startAgentWith(t, agentOpts{})
	seed := []string{first.PeerAddr()}
	second := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated})
	third := startAgentWith(t, agentOpts{join: seed, token: first.JoinTokenCreated})
	waitConfig(t, first.testAgent, 3, 3)
	var leader *edgeAgent
	var followers []*edgeAgent
	for _, a := range []*edgeAgent{first, second, third} {
		if a.Store().Node().IsLeader() {
			leader = a
		} else {
			followers = append(followers, a)
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	cut, other := followers[0], followers[1]
	cutID, healthy := cut.Store().Node().ID(), []string{leader.Store().Node().ID(), other.Store().Node().ID()}

	// The module is on both connected nodes, so neither fetches it (or
	// waits on the cut one to send it).
	module := wat(t)
	spec := storage.Spec{Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/tiny/*"}}}
	spec.SHA256, spec.Size = putBlob(t, leader.Store(), module)
	putBlob(t, other.Store(), module)

	isolate(t, cut)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := leader.Store().Deploy(ctx, "tiny", spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the two connected nodes to serve the version", func() bool {
		return leader.rec.VersionState("tiny", v.Version).State == "ready" &&
			other.rec.VersionState("tiny", v.Version).State == "ready"
	})

	// Gossip still lists the cut node alive: the error names it, and only
	// it, with the reason, once the context ends (and not later).
	const short = 4 * time.Second
	sctx, scancel := context.WithTimeout(ctx, short)
	start := time.Now()
	err = leader.waitServable(sctx, "tiny", v.Version)
	took := time.Since(start)
	scancel()
	if !alive(leader, cutID) {
		t.Fatal("gossip declared the cut node dead while its gossip still ran; the first wait tested nothing")
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), cutID+" (no answer") {
		t.Fatalf("wait while gossip lists the cut node %s alive: %v; want the deadline, naming it with \"no answer\"", cutID, err)
	}
	for _, id := range healthy {
		if strings.Contains(err.Error(), id) {
			t.Errorf("the wait's error %q names %s, which serves the version", err, id)
		}
	}
	t.Logf("wait with the cut node alive in gossip, after %v: %v", took, err)
	if took > short+time.Second {
		t.Errorf("the wait returned %v after it started, its context ended after %v", took, short)
	}

	// Gossip declares the cut node dead: a wait that was asking it
	// succeeds, without waiting for its deadline.
	const long = 20 * time.Second
	lctx, lcancel := context.WithTimeout(ctx, long)
	defer lcancel()
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	start = time.Now()
	go func() {
		err := leader.waitServable(lctx, "tiny", v.Version)
		done <- result{err, time.Now()}
	}()
	if err := cut.members.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, long, "gossip to declare the cut node dead", func() bool { return !alive(leader, cutID) })
	dead := time.Now()
	var res result
	select {
	case res = <-done:
	case <-time.After(long + 5*time.Second):
		t.Fatal("the wait did not return after its context ended")
	}
	t.Logf("gossip declared the cut node dead %v into the wait; the wait returned %v later: %v", dead.Sub(start), res.at.Sub(dead), res.err)
	if res.err != nil {
		t.Fatalf("wait once gossip declared the cut node dead (after %v): %v; want nil", dead.Sub(start), res.err)
	}
	if d := res.at.Sub(dead); d > 2*time.Second {
		t.Errorf("the wait returned %v after gossip declared the cut node dead; want within 2s", d)
	}
	if d := res.at.Sub(start); d > long/2 {
		t.Errorf("the wait returned after %v of its %v", d, long)
	}
}

// alive reports whether a's gossip lists id alive.
func alive(a *edgeAgent, id string) bool {
	for _, m := range a.Members() {
		if m.Name == id {
			return m.Status == StatusAlive
		}
	}
	return false
}

// isolate cuts ea off as a partition that drops its packets would, except
// for gossip, which keeps it listed alive until the caller shuts it down
// (ea.members.Shutdown, without leaving): its reconciler and Raft stop,
// and its peer API port neither answers nor refuses (dropSYNs), so a peer
// dialling it waits.
func isolate(t *testing.T, ea *edgeAgent) {
	t.Helper()
	ea.stopRec()
	<-ea.recDone
	addr := ea.PeerAddr()
	if err := ea.peerSrv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ea.Store().Close(); err != nil {
		t.Fatal(err)
	}
	dropSYNs(t, addr)
}

// dropSYNs listens on addr (IPv4) with a backlog of zero, fills the
// backlog and never accepts: Linux then drops every further SYN to addr,
// so a dial hangs as it does to a host whose packets are dropped. It skips
// the test where a dial is answered or refused instead.
func dropSYNs(t *testing.T, addr string) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ip, port := net.ParseIP(host).To4(), 0
	if port, err = strconv.Atoi(p); err != nil || ip == nil {
		t.Fatalf("%s: not an IPv4 host:port", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte(ip)}); err != nil {
		t.Fatalf("bind %s again: %v", addr, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return // the backlog is full: SYNs are dropped
		}
		if err != nil {
			t.Skipf("this kernel answers a dial to a full listen backlog (%v) instead of dropping the SYN (Linux with tcp_abort_on_overflow=0 drops it), so a peer whose packets are dropped cannot be imitated on %s", err, addr)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Skipf("dials to %s still connect with its listen backlog full, so a peer whose packets are dropped cannot be imitated here (Linux with tcp_abort_on_overflow=0 drops them)", addr)
}
