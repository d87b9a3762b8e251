package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// kvRuntime is a Store's KV configuration and its expiry loop.
//
// Goroutines: one expiry loop per Store (kvExpiryLoop), started by
// OpenStore and restarted by ConfigureKV, stopped through stopCh (waiting
// on doneCh) by ConfigureKV and Store.Close, before the Raft node closes.
// mu guards the fields; it is never held while the loop proposes (the loop
// does not take it), so stopping cannot deadlock with a purge in flight.
type kvRuntime struct {
	mu     sync.Mutex
	cfg    KVConfig
	stopCh chan struct{} // nil when no loop runs
	doneCh chan struct{}
	closed bool
}

// newKVRuntime starts s's expiry loop with the default configuration.
func newKVRuntime(s *Store) *kvRuntime {
	k := &kvRuntime{cfg: DefaultKVConfig()}
	k.start(s)
	return k
}

// start runs a new loop; k.mu must be held or k unshared.
func (k *kvRuntime) start(s *Store) {
	k.stopCh, k.doneCh = make(chan struct{}), make(chan struct{})
	go s.kvExpiryLoop(k.cfg.ExpireInterval, k.stopCh, k.doneCh)
}

// halt stops the loop and waits for it; k.mu must be held.
func (k *kvRuntime) halt() {
	if k.stopCh != nil {
		close(k.stopCh)
		<-k.doneCh
		k.stopCh, k.doneCh = nil, nil
	}
}

// stop ends the loop for good (Store.Close). Safe on a nil runtime and
// more than once.
func (k *kvRuntime) stop() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.halt()
	k.closed = true
}

// ConfigureKV replaces the KV limits and expiry interval (zero fields take
// the defaults). OpenStore starts with DefaultKVConfig; call it before the
// store serves requests, or at any time to change the limits of later
// writes.
func (s *Store) ConfigureKV(cfg KVConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	k := s.kv
	if k == nil {
		return fmt.Errorf("cluster: ConfigureKV needs a Store from OpenStore: %w", storage.ErrInvalid)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.halt()
	k.cfg = cfg
	if !k.closed {
		k.start(s)
	}
	return nil
}

// kvConfig returns the current KV configuration.
func (s *Store) kvConfig() KVConfig {
	if s.kv == nil {
		return DefaultKVConfig()
	}
	s.kv.mu.Lock()
	defer s.kv.mu.Unlock()
	return s.kv.cfg
}

// kvExpiryLoop purges expired keys every interval while this node leads;
// on a follower it only watches for leadership. It ends when stopCh closes.
func (s *Store) kvExpiryLoop(interval time.Duration, stopCh <-chan struct{}, doneCh chan<- struct{}) {
	defer close(doneCh)
	// Raft observations can be dropped; the recheck bounds how late a new
	// leader starts purging.
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	var purge *time.Ticker
	defer func() {
		if purge != nil {
			purge.Stop()
		}
	}()
	for {
		changed := s.node.changedCh() // before the check, so no change is missed
		leader := s.node.IsLeader()
		switch {
		case leader && purge == nil:
			purge = time.NewTicker(interval)
		case !leader && purge != nil:
			purge.Stop()
			purge = nil
		}
		var tick <-chan time.Time
		if purge != nil {
			tick = purge.C
		}
		select {
		case <-stopCh:
			return
		case <-changed:
		case <-recheck.C:
		case <-tick:
			s.expireKV(stopCh)
		}
	}
}

// expireKV proposes one purge if anything has expired by this node's
// clock. Failures are logged: the next tick retries.
func (s *Store) expireKV(stopCh <-chan struct{}) {
	now := time.Now()
	if !s.reg.State().KVHasExpired(now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.node.cfg.ApplyTimeout)
	defer cancel()
	go func() {
		// Close must not wait a whole ApplyTimeout for a purge.
		select {
		case <-stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	n, err := s.KVExpire(ctx, now)
	switch {
	case err == nil:
		s.node.log.Debug("purged expired KV keys", "keys", n)
	case errors.Is(err, ErrNotLeader), errors.Is(err, context.Canceled):
		// Leadership moved or the store is closing: nothing to report.
	default:
		s.node.log.Warn("purging expired KV keys failed; retrying at the next interval", "err", err)
	}
}
