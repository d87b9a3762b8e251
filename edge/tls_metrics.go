package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TLS metrics: gojinn_tls_handshakes_total{transport, result} and
// gojinn_tls_certificate_expiry_timestamp_seconds{name}.
//
// A handshake is ok when it completed: the server read the client's
// Finished. tls.Config.VerifyConnection is not a sound hook for that: in
// TLS 1.3 (so always on QUIC) the server calls it before the client's
// Finished, so a client that rejects the certificate would count as ok.
// Instead each transport looks at the connection's own handshake state:
//
//   - TCP: the http.Server ConnState hook, at the first state after
//     StateNew (StateActive once a request or the HTTP/2 preface arrives,
//     or StateClosed), reads tls.Conn.ConnectionState().HandshakeComplete.
//     A flag on the raw connection (handshakeConn) counts each
//     connection once. A connection that ends before its handshake
//     completes is an error: a refused certificate, an unsupported
//     version or ALPN, a handshake timeout, plain HTTP on the HTTPS port,
//     and also a client that connects and closes without a ClientHello
//     (a TCP health check).
//   - QUIC: quic.Transport.ConnContext attaches a quicHandshake to every
//     connection the server starts. A connection the edge accepts (the
//     listener returns it once the server's first flight is out) is
//     watched until its handshake completes or it ends; one that ends
//     before it is accepted (a ClientHello the TLS stack refuses, a
//     client that goes away, a connection over MaxConns) is counted as an
//     error when its context ends (context.AfterFunc, no goroutine).
//
// No label carries the SNI name, the client's address or error text.
// There is no reason label: on TCP the error is not visible to the hook,
// and classifying quic-go's errors would mean matching on their text.

// Values of the transport and result labels.
const (
	transportTCP   = "tcp"
	transportQUIC  = "quic"
	handshakeOK    = "ok"
	handshakeError = "error"
)

// handshake counts one server-side handshake. m may be nil.
func (m *Metrics) handshake(transport string, ok bool) {
	if m == nil {
		return
	}
	result := handshakeOK
	if !ok {
		result = handshakeError
	}
	m.handshakes.WithLabelValues(transport, result).Inc()
}

// handshakeListener wraps the raw TCP listener that http.Server.ServeTLS
// puts TLS on, so tcpConnState finds handshakeConn under every tls.Conn.
type handshakeListener struct {
	net.Listener
}

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c}, nil
}

// handshakeConn is a TCP connection under a tls.Conn; counted is set
// when its handshake has been counted.
type handshakeConn struct {
	net.Conn
	counted atomic.Bool
}

// tcpConnState is the ConnState hook of the HTTPS server: it counts a
// connection's handshake at its first state after StateNew.
func (m *Metrics) tcpConnState(c net.Conn, state http.ConnState) {
	if state == http.StateNew {
		return
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	hc, ok := tc.NetConn().(*handshakeConn)
	if !ok || !hc.counted.CompareAndSwap(false, true) {
		return
	}
	// The handshake has returned by now (the hook runs on the goroutine
	// that ran it, or later), so this does not wait on its lock.
	m.handshake(transportTCP, tc.ConnectionState().HandshakeComplete)
}

// quicHandshakeKey is the context key of a QUIC connection's
// quicHandshake.
type quicHandshakeKey struct{}

// quicHandshake is one QUIC connection's handshake, counted once.
type quicHandshake struct {
	m        *Metrics
	log      *slog.Logger
	remote   net.Addr
	accepted atomic.Bool // the edge accepted the connection; await counts it
	counted  atomic.Bool
}

// count counts the handshake once; a failed one is logged at debug level
// with cause, the reason quic-go ended the connection for, as net/http
// logs "http: TLS handshake error" for TCP.
func (h *quicHandshake) count(ok bool, cause error) {
	if h.counted.CompareAndSwap(false, true) {
		h.m.handshake(transportQUIC, ok)
		if !ok && h.log != nil {
			h.log.Debug("quic: TLS handshake error", "remote", h.remote.String(), "err", cause)
		}
	}
}

// quicConnContext returns the QUIC transport's ConnContext: quic-go calls
// it for every connection the server starts, and ends the returned
// context, with the connection's error as its cause, when the connection
// closes or its handshake fails. m may be nil: failed handshakes are
// still logged to log.
func (m *Metrics) quicConnContext(log *slog.Logger) func(context.Context, *quic.ClientInfo) (context.Context, error) {
	return func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
		h := &quicHandshake{m: m, log: log, remote: info.RemoteAddr}
		ctx = context.WithValue(ctx, quicHandshakeKey{}, h)
		context.AfterFunc(ctx, func() {
			if !h.accepted.Load() {
				h.count(false, context.Cause(ctx))
			}
		})
		return ctx, nil
	}
}

// quicHandshakeListener hands each connection it accepts to a
// quicHandshake watcher.
type quicHandshakeListener struct {
	http3.QUICListener
}

func (l quicHandshakeListener) Accept(ctx context.Context) (*quic.Conn, error) {
	c, err := l.QUICListener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	if h, ok := c.Context().Value(quicHandshakeKey{}).(*quicHandshake); ok {
		h.accepted.Store(true)
		// Ends when the handshake completes or the connection ends
		// (Shutdown closes the transport, which ends every connection);
		// so it lives at most about one round trip, or
		// ReadHeaderTimeout (the QUIC handshake timeout).
		go h.await(c)
	}
	return c, nil
}

// await counts c's handshake once it completes or c ends.
func (h *quicHandshake) await(c *quic.Conn) {
	select {
	case <-c.HandshakeComplete():
		h.count(true, nil)
	case <-c.Context().Done():
		// quic-go closes HandshakeComplete before it ends the context
		// (both on the connection's run loop), so this is final.
		select {
		case <-c.HandshakeComplete():
			h.count(true, nil)
		default:
			h.count(false, context.Cause(c.Context()))
		}
	}
}

// certExpiryCollector reports the expiry of the certificates a TLS
// serves, read from the TLS at each scrape.
type certExpiryCollector struct {
	desc *prometheus.Desc
	tls  atomic.Pointer[TLS]
}

func newCertExpiryCollector() *certExpiryCollector {
	return &certExpiryCollector{desc: prometheus.NewDesc("gojinn_tls_certificate_expiry_timestamp_seconds",
		"NotAfter (unix seconds) of each certificate the edge serves, by its first DNS name.", []string{"name"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *certExpiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.tls.Load()
	if t == nil {
		return
	}
	for name, notAfter := range soonest(expiryByName(t.servedLeaves()), maxExpirySeries) {
		m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(notAfter.Unix()), name)
		if err != nil { // a name that is not UTF-8
			m = prometheus.NewInvalidMetric(c.desc, err)
		}
		ch <- m
	}
}

// maxExpirySeries bounds the certificate expiry series. ACME on-demand
// issuance under a wildcard route can serve a certificate per host name
// clients ask for; past this many, the ones that expire soonest, which
// alerts are about, are reported.
const maxExpirySeries = 100

// soonest returns the n entries of byName that expire first (all of them
// when there are no more than n).
func soonest(byName map[string]time.Time, n int) map[string]time.Time {
	if len(byName) <= n {
		return byName
	}
	names := slices.Collect(maps.Keys(byName))
	slices.SortFunc(names, func(a, b string) int {
		if c := byName[a].Compare(byName[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make(map[string]time.Time, n)
	for _, name := range names[:n] {
		out[name] = byName[name]
	}
	return out
}

// expiryByName keys leaves by certName. Two leaves with one name (an old
// and a renewed certificate both still cached) report the later NotAfter,
// the one handshakes are given.
func expiryByName(leaves []*x509.Certificate) map[string]time.Time {
	out := make(map[string]time.Time, len(leaves))
	for _, l := range leaves {
		name := certName(l)
		if old, ok := out[name]; !ok || l.NotAfter.After(old) {
			out[name] = l.NotAfter
		}
	}
	return out
}

// certName names a certificate for the name label: its first DNS SAN,
// else its first IP SAN, else its subject's common name. The names come
// from configuration, routes or certificate files, never from a client.
func certName(c *x509.Certificate) string {
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return c.Subject.CommonName
}

// servedLeaves returns the leaf of every certificate t serves now.
func (t *TLS) servedLeaves() []*x509.Certificate {
	switch {
	case t.ca != nil:
		return t.ca.servedLeaves()
	case t.files != nil:
		return t.files.servedLeaves()
	case t.acme != nil:
		return t.acme.servedLeaves()
	}
	return nil
}

// servedLeaves returns the default leaf and the leaves signed for allowed
// names (at most caMaxDynamicLeaves).
func (ca *internalCA) servedLeaves() []*x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	out := make([]*x509.Certificate, 0, 1+len(ca.dynamic))
	if ca.def != nil {
		out = append(out, ca.def.Leaf)
	}
	for _, c := range ca.dynamic {
		out = append(out, c.Leaf)
	}
	return out
}

// servedLeaves returns the leaf of the pair in service.
func (f *filesTLS) servedLeaves() []*x509.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checkReload() // a scrape sees a replaced pair without waiting for a handshake
	if f.cert == nil || f.cert.Leaf == nil {
		return nil
	}
	return []*x509.Certificate{f.cert.Leaf}
}
