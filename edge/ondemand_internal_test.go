package edge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for the gate.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// The gate lets onDemandBurst new names through at once, then one per
// onDemandEvery; a name already let through is not charged again.
func TestOnDemandGateRate(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	g := newOnDemandGate(clk.now)
	for i := range onDemandBurst {
		if err := g.take(fmt.Sprintf("n%d.example.com", i)); err != nil {
			t.Fatalf("name %d of the burst: %v", i, err)
		}
	}
	if err := g.take("one-too-many.example.com"); err == nil || !strings.Contains(err.Error(), "too many new on-demand") {
		t.Fatalf("past the burst: %v", err)
	}
	if err := g.take("n0.example.com"); err != nil {
		t.Fatalf("a name already let through was charged again: %v", err)
	}
	clk.t = clk.t.Add(onDemandEvery)
	if err := g.take("later.example.com"); err != nil {
		t.Fatalf("after one interval: %v", err)
	}
	if err := g.take("later2.example.com"); err == nil {
		t.Fatal("two names in one interval after the burst")
	}
	clk.t = clk.t.Add(onDemandRemember + time.Second)
	if err := g.take("n1.example.com"); err != nil {
		t.Fatalf("the bucket refilled over an hour: %v", err)
	}
}

// A name whose order failed is refused until onDemandFailedFor passed.
func TestOnDemandGateFailure(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	g := newOnDemandGate(clk.now)
	if err := g.refused("bad.example.com"); err != nil {
		t.Fatalf("before any failure: %v", err)
	}
	g.fail("bad.example.com")
	if err := g.refused("bad.example.com"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("right after the failure: %v", err)
	}
	if err := g.refused("other.example.com"); err != nil {
		t.Fatalf("another name: %v", err)
	}
	clk.t = clk.t.Add(onDemandFailedFor)
	if err := g.refused("bad.example.com"); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
}

// The gate's memory is bounded: expired entries make room, live ones do
// not.
func TestOnDemandGateBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	g := newOnDemandGate(clk.now)
	for i := range onDemandMaxNames {
		g.fail(fmt.Sprintf("f%d.example.com", i))
	}
	if len(g.failed) != onDemandMaxNames {
		t.Fatalf("%d failed names kept", len(g.failed))
	}
	g.fail("one-more.example.com")
	if len(g.failed) != onDemandMaxNames {
		t.Fatalf("past the cap: %d names kept", len(g.failed))
	}
	clk.t = clk.t.Add(onDemandFailedFor + time.Second)
	g.fail("after.example.com")
	if len(g.failed) != 1 {
		t.Fatalf("expired names were not dropped: %d kept", len(g.failed))
	}
}

// decide asks allow only for names that are neither configured nor
// managed, refuses a name whose order failed (CertMagic's cert_failed
// event) without asking, and rate-limits new names.
func TestACMEDecide(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	var asked []string
	a := &acmeTLS{managedNames: map[string]bool{"managed.example.com": true}, cachedNames: map[string]uint64{},
		configured: map[string]bool{"configured.example.com": true}, gate: newOnDemandGate(clk.now),
		allow: func(n string) bool { asked = append(asked, n); return strings.HasSuffix(n, ".routed.example.com") }}
	for _, n := range []string{"configured.example.com", "Managed.Example.com."} {
		if err := a.decide(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if len(asked) != 0 {
		t.Fatalf("allow asked for configured names: %v", asked)
	}
	if err := a.decide("stranger.example.org"); err == nil || !strings.Contains(err.Error(), "no route names this host") {
		t.Fatalf("a name no route names: %v", err)
	}
	if err := a.decide("a.routed.example.com"); err != nil {
		t.Fatalf("a routed name: %v", err)
	}
	_ = a.onEvent(context.Background(), "cert_failed", map[string]any{"renewal": false, "identifier": "a.routed.example.com"})
	asked = nil
	if err := a.decide("a.routed.example.com"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("after its order failed: %v", err)
	}
	if len(asked) != 0 {
		t.Fatalf("allow asked for a name that failed: %v", asked)
	}
	refused := 0
	for i := range 2 * onDemandBurst {
		if a.decide(fmt.Sprintf("x%d.routed.example.com", i)) != nil {
			refused++
		}
	}
	if refused != onDemandBurst+1 { // one token went to a.routed.example.com
		t.Fatalf("%d of %d new names refused, want %d", refused, 2*onDemandBurst, onDemandBurst+1)
	}
}
