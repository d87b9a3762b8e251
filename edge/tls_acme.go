package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// acmeTLS is mode acme: CertMagic with one ACME issuer.
//
// There are two CertMagic configs over one cache. managed obtains and
// renews the names given to ManageSync (and TLSConfig.Names) in the
// background; onDemand, present only with TLSConfig.OnDemand, serves
// handshakes and obtains certificates for allowed names during them.
// Two are needed because CertMagic's ManageSync only allowlists names
// (without obtaining them) on a config that has OnDemand set.
//
// Goroutines: CertMagic's cache maintenance (stopped by cache.Stop in
// Close) and its obtain/renew jobs, which end when ctx is cancelled.
type acmeTLS struct {
	ctx    context.Context
	cancel context.CancelFunc
	cache  *certmagic.Cache

	managed   *certmagic.Config
	handshake *certmagic.Config // onDemand when on, else managed
	issuer    *certmagic.ACMEIssuer

	mu           sync.Mutex
	onDemand     *certmagic.Config // nil when off; set once, read by the cache's goroutine
	managedNames map[string]bool

	// configured are TLSConfig.Names; allow and gate decide the other
	// names on-demand TLS may obtain (decide).
	configured map[string]bool
	allow      func(string) bool
	gate       *onDemandGate

	// namesMu guards cachedNames: the names of certificates CertMagic put
	// in the cache, each with the sequence number of the last time, for
	// servedLeaves. It is never held while calling into CertMagic.
	namesMu     sync.Mutex
	cachedNames map[string]uint64
	namesSeq    uint64

	closeOnce sync.Once
}

func newACMETLS(ctx context.Context, cfg TLSConfig, allow func(string) bool, log *slog.Logger) (*acmeTLS, error) {
	zl := zapToSlog(log).Named("certmagic")
	storage := cfg.Storage
	if storage == nil {
		storage = &certmagic.FileStorage{Path: filepath.Join(cfg.DataDir, "tls", "certmagic")}
	}
	a := &acmeTLS{managedNames: make(map[string]bool), cachedNames: make(map[string]uint64),
		configured: make(map[string]bool), allow: allow, gate: newOnDemandGate(time.Now)}
	a.ctx, a.cancel = context.WithCancel(ctx)

	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: a.configForCert,
		Logger:           zl,
	})
	newConfig := func(od *certmagic.OnDemandConfig) (*certmagic.Config, *certmagic.ACMEIssuer) {
		magic := certmagic.New(a.cache, certmagic.Config{Storage: storage, Logger: zl, OnDemand: od, OnEvent: a.onEvent})
		issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
			CA:                      cfg.CA, // "" means certmagic's default: Let's Encrypt production
			Email:                   cfg.Email,
			Agreed:                  true,
			TrustedRoots:            cfg.CARoots,
			DisableHTTPChallenge:    cfg.DisableHTTPChallenge,
			DisableTLSALPNChallenge: cfg.DisableTLSALPNChallenge,
			AltHTTPPort:             cfg.ACMEHTTPPort,
			AltTLSALPNPort:          cfg.ACMETLSPort,
			Logger:                  zl,
		})
		magic.Issuers = []certmagic.Issuer{issuer}
		return magic, issuer
	}
	a.managed, a.issuer = newConfig(nil)
	a.handshake = a.managed
	if cfg.OnDemand {
		for _, n := range cfg.Names {
			a.configured[tlsNormalizeHost(n)] = true
		}
		onDemand, _ := newConfig(&certmagic.OnDemandConfig{
			DecisionFunc: func(_ context.Context, name string) error { return a.decide(name) },
		})
		a.handshake = onDemand
		a.mu.Lock()
		a.onDemand = onDemand
		a.mu.Unlock()
	}

	if len(cfg.Names) > 0 {
		a.markManaged(cfg.Names)
		// Async: a CA that is down must not stop the node from starting.
		if err := a.managed.ManageAsync(a.ctx, cfg.Names); err != nil {
			a.Close()
			return nil, fmt.Errorf("tls: managing %v: %w", cfg.Names, err)
		}
	}
	return a, nil
}

// configForCert tells the cache which config maintains a certificate:
// managed renews in the background; onDemand renews during handshakes, so
// names no route serves any more stop being renewed.
func (a *acmeTLS) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	a.mu.Lock()
	onDemand := a.onDemand
	a.mu.Unlock()
	if onDemand == nil || a.isManaged(cert.Names) {
		return a.managed, nil
	}
	return onDemand, nil
}

func (a *acmeTLS) isManaged(names []string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range names {
		if a.managedNames[tlsNormalizeHost(n)] {
			return true
		}
	}
	return false
}

func (a *acmeTLS) markManaged(names []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range names {
		a.managedNames[tlsNormalizeHost(n)] = true
	}
}

// GetCertificate serves handshakes, including TLS-ALPN-01 challenges.
func (a *acmeTLS) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.handshake.GetCertificate(hello)
}

// HTTPChallengeHandler answers HTTP-01 challenges started by this node or,
// through the shared storage, by any node.
func (a *acmeTLS) HTTPChallengeHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

// ManageSync obtains or loads names now; renewal follows in the background.
func (a *acmeTLS) ManageSync(ctx context.Context, names []string) error {
	a.markManaged(names)
	// Obtaining must stop when the TLS closes, as well as with ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(a.ctx, cancel)
	defer stop()
	if err := a.managed.ManageSync(ctx, names); err != nil {
		return fmt.Errorf("tls: acme: %w", err)
	}
	return nil
}

// ManageAsync has names obtained or loaded in the background, each with
// CertMagic's retries, and renewed.
func (a *acmeTLS) ManageAsync(names []string) error {
	a.markManaged(names)
	if err := a.managed.ManageAsync(a.ctx, names); err != nil {
		return fmt.Errorf("tls: acme: %w", err)
	}
	return nil
}

// Close cancels background obtaining and stops the cache's maintenance.
func (a *acmeTLS) Close() {
	a.closeOnce.Do(func() {
		a.cancel()
		a.cache.Stop()
	})
}

// onEvent records the names of every certificate CertMagic puts in the
// cache (loaded from storage or obtained; a renewal replaces one under
// the same names), for servedLeaves: the cache has no exported way to
// list its certificates, only to look them up by name.
// decide is on-demand TLS's decision: may a handshake for name obtain a
// certificate? Configured and managed names may; any other needs allow
// (a route names it) and passes the gate (onDemandGate: a name that
// failed recently is refused, new names are rate-limited).
func (a *acmeTLS) decide(name string) error {
	name = tlsNormalizeHost(name)
	if a.configured[name] || a.isManaged([]string{name}) {
		return nil
	}
	if err := a.gate.refused(name); err != nil {
		return err
	}
	if a.allow == nil || !a.allow(name) {
		return fmt.Errorf("%s: no route names this host", name)
	}
	return a.gate.take(name)
}

func (a *acmeTLS) onEvent(_ context.Context, event string, data map[string]any) error {
	if event == "cert_failed" {
		// An on-demand name whose order failed waits before it may order
		// again (a renewal failure of a name it serves does not matter
		// here: decide lets served names through without the gate).
		if renewal, _ := data["renewal"].(bool); !renewal {
			if name, ok := data["identifier"].(string); ok {
				a.gate.fail(tlsNormalizeHost(name))
			}
		}
		return nil
	}
	if event != "cached_managed_cert" && event != "cached_unmanaged_cert" {
		return nil
	}
	names, _ := data["sans"].([]string)
	a.namesMu.Lock()
	defer a.namesMu.Unlock()
	for _, n := range names {
		a.namesSeq++
		a.cachedNames[n] = a.namesSeq
	}
	return nil
}

// servedLeaves returns the leaves of the certificates in the cache. A
// name that no cached certificate covers any more (it was removed from
// the cache) is forgotten, unless it was cached again meanwhile.
func (a *acmeTLS) servedLeaves() []*x509.Certificate {
	a.namesMu.Lock()
	names := make(map[string]uint64, len(a.cachedNames))
	for n, seq := range a.cachedNames {
		names[n] = seq
	}
	a.namesMu.Unlock()

	seen := make(map[string]bool)
	var out []*x509.Certificate
	var gone []string
	for n := range names {
		certs := a.cache.AllMatchingCertificates(n)
		if len(certs) == 0 {
			gone = append(gone, n)
		}
		for _, c := range certs {
			if seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			if leaf := certLeaf(c.Certificate); leaf != nil {
				out = append(out, leaf)
			}
		}
	}
	if len(gone) > 0 {
		a.namesMu.Lock()
		for _, n := range gone {
			// The event comes after the certificate is cached, so an
			// unchanged number means none was cached since the lookup.
			if a.cachedNames[n] == names[n] {
				delete(a.cachedNames, n)
			}
		}
		a.namesMu.Unlock()
	}
	return out
}

// certLeaf returns c's parsed leaf, parsing it when CertMagic did not.
func certLeaf(c tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
