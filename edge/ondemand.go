package edge

import (
	"fmt"
	"sync"
	"time"
)

// On-demand TLS lets a handshake order a certificate for a name the node
// was not configured with, when the allow callback accepts it (a name a
// route names). Every order counts against the ACME account's and the
// domain's rate limits at the CA (Let's Encrypt: 300 new orders per
// account per 3 hours, 50 certificates per registered domain per week),
// so onDemandGate bounds what clients can make the node order:
//
//   - new names: at most onDemandBurst at once, then one per
//     onDemandEvery (a name let through is not charged again for
//     onDemandRemember, while CertMagic obtains it or retries);
//   - a name whose order failed is refused for onDemandFailedFor, instead
//     of starting a new order at every handshake.
const (
	onDemandBurst     = 10
	onDemandEvery     = time.Minute
	onDemandRemember  = time.Hour
	onDemandFailedFor = time.Hour
	// onDemandMaxNames bounds each of the gate's maps; past it, expired
	// entries are dropped, and if none are, the name is refused.
	onDemandMaxNames = 10000
)

// onDemandGate is the rate limit and failure memory of on-demand TLS.
// Safe for concurrent use.
type onDemandGate struct {
	now func() time.Time

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	allowed map[string]time.Time // let through, until
	failed  map[string]time.Time // refused, until
}

func newOnDemandGate(now func() time.Time) *onDemandGate {
	return &onDemandGate{now: now, tokens: onDemandBurst, last: now(),
		allowed: make(map[string]time.Time), failed: make(map[string]time.Time)}
}

// refused returns why name may not start an order now (a recent failure),
// or nil.
func (g *onDemandGate) refused(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until, ok := g.failed[name]; ok && g.now().Before(until) {
		return fmt.Errorf("%s: obtaining its certificate failed; on-demand TLS tries again after %s", name, until.UTC().Format(time.RFC3339))
	}
	return nil
}

// take charges a new name against the rate limit; a name let through
// within onDemandRemember is not charged again.
func (g *onDemandGate) take(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if until, ok := g.allowed[name]; ok && now.Before(until) {
		return nil
	}
	g.tokens = min(onDemandBurst, g.tokens+now.Sub(g.last).Seconds()/onDemandEvery.Seconds())
	g.last = now
	if g.tokens < 1 {
		return fmt.Errorf("%s: too many new on-demand certificate names (at most %d at once, then one per %v); try again later", name, onDemandBurst, onDemandEvery)
	}
	if !remember(g.allowed, name, now.Add(onDemandRemember), now) {
		return fmt.Errorf("%s: on-demand TLS remembers %d names already; try again later", name, onDemandMaxNames)
	}
	g.tokens--
	return nil
}

// fail records that obtaining name's certificate failed.
func (g *onDemandGate) fail(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	remember(g.failed, name, now.Add(onDemandFailedFor), now)
	delete(g.allowed, name)
}

// remember sets m[name] = until, dropping expired entries first when m is
// full; it reports false when m is full of live entries.
func remember(m map[string]time.Time, name string, until, now time.Time) bool {
	if _, ok := m[name]; !ok && len(m) >= onDemandMaxNames {
		for n, u := range m {
			if !now.Before(u) {
				delete(m, n)
			}
		}
		if len(m) >= onDemandMaxNames {
			return false
		}
	}
	m[name] = until
	return true
}
