package cluster

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// failLimiter is a token bucket per remote address that only failures
// drain: a client may fail burst times in a row, then once per every. It
// raises the cost of guessing; the 256-bit secret is what makes guessing
// hopeless.
type failLimiter struct {
	burst float64
	every time.Duration
	max   int // addresses tracked; beyond it refilled buckets are dropped

	mu      sync.Mutex
	buckets map[netip.Prefix]*failBucket
}

// failBucket holds the attempts an address has left at a time.
type failBucket struct {
	tokens float64
	at     time.Time
}

func newFailLimiter(burst int, every time.Duration, maxAddrs int) *failLimiter {
	return &failLimiter{burst: float64(burst), every: every, max: maxAddrs, buckets: make(map[netip.Prefix]*failBucket)}
}

// refill brings b up to now. Callers hold mu.
func (l *failLimiter) refill(b *failBucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
	}
	b.at = now
}

// allow reports whether key may try now, and else how long until it may.
func (l *failLimiter) allow(key netip.Prefix, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return true, 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// fail records a failed attempt by key.
func (l *failLimiter) fail(key netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = &failBucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// prune drops buckets that refilled (they hold no memory of failures);
// when none did, it drops one arbitrary bucket, so memory stays bounded
// even against many addresses. Callers hold mu.
func (l *failLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.max {
		return
	}
	for k := range l.buckets {
		delete(l.buckets, k)
		break
	}
}

// remoteKey is the limiter key of a request's remote address: the IPv4
// address, or the IPv6 /64 (one host usually owns a whole /64).
func remoteKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // all unparsable addresses share one bucket
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}
