package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/gojinn/gojinn/edge/internal/pebbletest"
)

const (
	handshakesMetric = "gojinn_tls_handshakes_total"
	expiryMetric     = "gojinn_tls_certificate_expiry_timestamp_seconds"
)

// metricsEdge is an edge Server counting into its own registry.
type metricsEdge struct {
	reg        *prometheus.Registry
	metrics    *Metrics
	tcp, udp   string // bound addresses
	metricsURL string
	logs       tlsLogBuffer // the edge's log, debug level
}

// startMetricsEdge runs NewServer on 127.0.0.1:0 with tl's configs and
// metrics reporting tl's certificates, and serves the registry over
// HTTP as a node's /metrics does. Both stop when the test ends.
func startMetricsEdge(t *testing.T, tl *TLS) *metricsEdge {
	t.Helper()
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	e := &metricsEdge{reg: prometheus.NewRegistry()}
	var err error
	if e.metrics, err = NewMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	e.metrics.ReportCertificates(tl)
	srv, err := NewServer(ServerConfig{
		HTTPSAddr: "127.0.0.1:0",
		TCPTLS:    tl.TCPConfig(), QUICTLS: tl.QUICConfig(),
		Metrics: e.metrics,
		Logger:  slog.New(slog.NewTextHandler(io.MultiWriter(tlsTestWriter(t), &e.logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.tcp, e.udp, _ = srv.Addrs()
	ms := httptest.NewServer(promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(ms.Close)
	e.metricsURL = ms.URL
	return e
}

// scrape fetches the registry's text exposition and returns every
// gojinn_tls_* sample keyed as name{label="value",...} (labels sorted).
func (e *metricsEdge) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(e.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, "gojinn_tls_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			v := m.GetCounter().GetValue()
			if m.GetGauge() != nil {
				v = m.GetGauge().GetValue()
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func handshakesKey(transport, result string) string {
	return fmt.Sprintf("%s{result=%q,transport=%q}", handshakesMetric, result, transport)
}

func expiryKey(name string) string { return fmt.Sprintf("%s{name=%q}", expiryMetric, name) }

// waitHandshakes polls the scrape until the four handshake counters are
// want (transport/result -> count). The server counts a failed handshake
// when it sees it fail, which can be after the client gave up.
func (e *metricsEdge) waitHandshakes(t *testing.T, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	tlsWaitFor(t, 10*time.Second, func() bool {
		got = e.scrape(t)
		for _, tr := range []string{"tcp", "quic"} {
			for _, res := range []string{"ok", "error"} {
				if got[handshakesKey(tr, res)] != want[tr+"/"+res] {
					return false
				}
			}
		}
		return true
	}, func() string { return fmt.Sprintf("handshakes %v, want %v", got, want) })
	return got
}

// expirySeries returns the expiry samples of a scrape.
func expirySeries(s map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		if strings.HasPrefix(k, expiryMetric+"{") {
			out[k] = v
		}
	}
	return out
}

// httpsGet makes one request with a new client of the given protocol
// ("h1", "h2" or "h3") and returns the answer's protocol and TLS state.
func httpsGet(t *testing.T, proto, addr string, cfg *tls.Config) (string, *tls.ConnectionState) {
	t.Helper()
	var rt http.RoundTripper
	switch proto {
	case "h1":
		tr := &http.Transport{TLSClientConfig: cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		defer tr.CloseIdleConnections()
		rt = tr
	case "h2":
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		rt = tr
	case "h3":
		tr := &http3.Transport{TLSClientConfig: cfg, QUICConfig: &quic.Config{}}
		defer tr.Close()
		rt = tr
	}
	resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("%s GET %s: %v", proto, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantProto := map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2.0", "h3": "HTTP/3.0"}[proto]
	if resp.StatusCode != http.StatusOK || string(body) != wantProto {
		t.Fatalf("%s: status %d body %q", proto, resp.StatusCode, body)
	}
	return resp.Proto, resp.TLS
}

// TestTLSMetricsInternalCA runs the edge with the internal CA and checks
// by scraping that completed handshakes over HTTP/1.1 (one of them
// resumed), HTTP/2 and HTTP/3 count as ok per transport; that a client
// that refuses the certificate, a TLS 1.0 client and plain HTTP on the
// TLS port count as TCP errors, and a client that refuses the
// certificate and one offering the wrong ALPN as QUIC errors; and that
// the expiry gauge reports the default leaf and a leaf signed for an
// allowed name with the NotAfter the clients were served.
func TestTLSMetricsInternalCA(t *testing.T) {
	dir := t.TempDir()
	tl := newInternalTLS(t, dir, []string{"edge.test"}, func(h string) bool { return h == "fn.test" })
	e := startMetricsEdge(t, tl)
	pool, _ := exportedPool(t, dir)

	// Nothing yet: every combination is there, at zero.
	e.waitHandshakes(t, map[string]float64{})

	// h1 twice with a session cache: the second connection resumes.
	resumable := &tls.Config{RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	_, h1State := httpsGet(t, "h1", e.tcp, resumable)
	if _, st := httpsGet(t, "h1", e.tcp, resumable); !st.DidResume {
		t.Error("the second HTTP/1.1 connection did not resume; the test means to count a resumed handshake")
	}
	_, h2State := httpsGet(t, "h2", e.tcp, &tls.Config{RootCAs: pool, ServerName: "fn.test"})
	httpsGet(t, "h3", e.udp, &tls.Config{RootCAs: pool})
	e.waitHandshakes(t, map[string]float64{"tcp/ok": 3, "quic/ok": 1})

	// TCP failures.
	dialTLS := func(cfg *tls.Config) error {
		d := &tls.Dialer{Config: cfg}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", e.tcp)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dialTLS(&tls.Config{ServerName: "edge.test"}); err == nil { // system roots
		t.Fatal("a client without the internal root completed a handshake")
	}
	if err := dialTLS(&tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS10}); err == nil {
		t.Fatal("a TLS 1.0 handshake succeeded")
	}
	plain, err := net.Dial("tcp", e.tcp)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(plain, "GET / HTTP/1.0\r\n\r\n")
	answer, _ := io.ReadAll(plain)
	plain.Close()
	if !strings.HasPrefix(string(answer), "HTTP/1.0 400") {
		t.Errorf("plain HTTP on the TLS port got %q", answer)
	}

	// QUIC failures: the certificate refused after the server's flight,
	// and a ClientHello the server refuses (no h3).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{}}
	if resp, err := (&http.Client{Transport: h3, Timeout: 10 * time.Second}).Get("https://" + e.udp + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("an HTTP/3 client without the internal root completed a handshake")
	}
	h3.Close()
	if c, err := quic.DialAddr(ctx, e.udp, &tls.Config{RootCAs: pool, NextProtos: []string{"not-h3"}}, nil); err == nil {
		c.CloseWithError(0, "")
		t.Fatal("a QUIC handshake without h3 succeeded")
	}

	got := e.waitHandshakes(t, map[string]float64{"tcp/ok": 3, "tcp/error": 3, "quic/ok": 1, "quic/error": 2})
	// Each failed QUIC handshake says why in the debug log, as TCP's do.
	if n := strings.Count(e.logs.String(), "quic: TLS handshake error"); n != 2 {
		t.Errorf("%d QUIC handshake errors in the debug log, want 2:\n%s", n, e.logs.String())
	}

	want := map[string]float64{
		expiryKey("edge.test"): float64(h1State.PeerCertificates[0].NotAfter.Unix()),
		expiryKey("fn.test"):   float64(h2State.PeerCertificates[0].NotAfter.Unix()),
	}
	if exp := expirySeries(got); !maps.Equal(exp, want) {
		t.Errorf("expiry series %v, want %v", exp, want)
	}
}

// TestTLSMetricsFiles checks that the expiry gauge reports the pair of
// mode files that the edge serves, and after the files are replaced
// reports the new pair only.
func TestTLSMetricsFiles(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, first := writeTestPair(t, dir, "first", "files.test", "127.0.0.1")
	tl, err := NewTLS(context.Background(), TLSConfig{Mode: TLSModeFiles, CertFile: certPath, KeyFile: keyPath}, nil, tlsTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	tl.files.mu.Lock()
	tl.files.interval = 0 // look at the files on every handshake
	tl.files.mu.Unlock()
	e := startMetricsEdge(t, tl)

	_, st := httpsGet(t, "h2", e.tcp, &tls.Config{RootCAs: tlsPoolOf(first), ServerName: "files.test"})
	if !st.PeerCertificates[0].Equal(first) {
		t.Fatal("the edge did not serve the file's certificate")
	}
	got := e.waitHandshakes(t, map[string]float64{"tcp/ok": 1})
	if exp, want := expirySeries(got), map[string]float64{expiryKey("files.test"): float64(first.NotAfter.Unix())}; !maps.Equal(exp, want) {
		t.Fatalf("expiry series %v, want %v", exp, want)
	}

	newCert, newKey, second := writeTestPair(t, dir, "second", "renamed.test", "127.0.0.1")
	later := time.Now().Add(time.Minute)
	for _, p := range []string{newCert, newKey} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	for from, to := range map[string]string{newCert: certPath, newKey: keyPath} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	_, st = httpsGet(t, "h3", e.udp, &tls.Config{RootCAs: tlsPoolOf(second), ServerName: "renamed.test"})
	if !st.PeerCertificates[0].Equal(second) {
		t.Fatal("the edge did not serve the replaced certificate")
	}
	got = e.waitHandshakes(t, map[string]float64{"tcp/ok": 1, "quic/ok": 1})
	if exp, want := expirySeries(got), map[string]float64{expiryKey("renamed.test"): float64(second.NotAfter.Unix())}; !maps.Equal(exp, want) {
		t.Fatalf("after replacing the files: expiry series %v, want %v", exp, want)
	}
}

// TestTLSMetricsACME obtains a certificate for localhost from an
// in-process Pebble, serves it on the edge over HTTP/2 and HTTP/3, and
// checks that the expiry gauge reports CertMagic's cached certificate
// with the NotAfter the clients were served, and stops reporting it once
// it is removed from the cache.
func TestTLSMetricsACME(t *testing.T) {
	httpLn, httpPort := tlsListenTCP(t)
	p := pebbletest.New(t, httpPort, 1) // TLS-ALPN-01 is off: nothing dials port 1
	tl := startACMETLS(t, p, func(c *TLSConfig) {
		c.DisableTLSALPNChallenge = true
		c.ACMEHTTPPort = httpPort
	}, nil)
	tlsServePlainHTTP(t, httpLn, tl.HTTPChallengeHandler(http.NotFoundHandler()))
	e := startMetricsEdge(t, tl)
	if exp := expirySeries(e.scrape(t)); len(exp) != 0 {
		t.Fatalf("expiry series before any certificate: %v", exp)
	}

	ctx, cancel := context.WithTimeout(context.Background(), acmeTestTimeout)
	defer cancel()
	if err := tl.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("obtaining a certificate from Pebble: %v", err)
	}
	cfg := &tls.Config{RootCAs: p.IssuerRoots(), ServerName: "localhost"}
	_, h2State := httpsGet(t, "h2", e.tcp, cfg)
	_, h3State := httpsGet(t, "h3", e.udp, cfg)
	assertChainsTo(t, h2State, p.IssuerRoot())
	if !h3State.PeerCertificates[0].Equal(h2State.PeerCertificates[0]) {
		t.Fatal("HTTP/2 and HTTP/3 were served different certificates")
	}
	got := e.waitHandshakes(t, map[string]float64{"tcp/ok": 1, "quic/ok": 1})
	want := map[string]float64{expiryKey("localhost"): float64(h2State.PeerCertificates[0].NotAfter.Unix())}
	if exp := expirySeries(got); !maps.Equal(exp, want) {
		t.Fatalf("expiry series %v, want %v", exp, want)
	}

	tl.acme.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: "localhost"}})
	if exp := expirySeries(e.scrape(t)); len(exp) != 0 {
		t.Fatalf("expiry series after the certificate left the cache: %v", exp)
	}
}

// TestCertName checks the name label's fallbacks: the first DNS SAN,
// else the first IP SAN, else the common name.
func TestCertName(t *testing.T) {
	for _, tc := range []struct {
		cert x509.Certificate
		want string
	}{
		{x509.Certificate{DNSNames: []string{"a.test", "b.test"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}, Subject: pkix.Name{CommonName: "cn"}}, "a.test"},
		{x509.Certificate{IPAddresses: []net.IP{net.IPv6loopback, net.IPv4(10, 0, 0, 1)}, Subject: pkix.Name{CommonName: "cn"}}, "::1"},
		{x509.Certificate{Subject: pkix.Name{CommonName: "cn"}}, "cn"},
	} {
		if got := certName(&tc.cert); got != tc.want {
			t.Errorf("certName(%v %v) = %q, want %q", tc.cert.DNSNames, tc.cert.IPAddresses, got, tc.want)
		}
	}
}

// TestSoonestBoundsExpirySeries: past maxExpirySeries certificates (ACME
// on-demand under a wildcard route), the series report those that expire
// first, ties broken by name so scrapes agree.
func TestSoonestBoundsExpirySeries(t *testing.T) {
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	byName := map[string]time.Time{}
	for i := range maxExpirySeries + 50 {
		// Names in reverse order of expiry, two names per instant.
		byName[fmt.Sprintf("h%03d.example.test", i)] = base.Add(time.Duration(maxExpirySeries+50-i/2*2) * time.Hour)
	}
	got := soonest(byName, maxExpirySeries)
	if len(got) != maxExpirySeries {
		t.Fatalf("%d series, want %d", len(got), maxExpirySeries)
	}
	var latestKept time.Time
	for name, at := range got {
		if byName[name] != at {
			t.Fatalf("%s: %v, want %v", name, at, byName[name])
		}
		if at.After(latestKept) {
			latestKept = at
		}
	}
	for name, at := range byName {
		if _, kept := got[name]; !kept && at.Before(latestKept) {
			t.Errorf("%s expires at %v, before a kept one (%v), but was left out", name, at, latestKept)
		}
	}
	small := map[string]time.Time{"a": base}
	if got := soonest(small, maxExpirySeries); len(got) != 1 || got["a"] != base {
		t.Errorf("under the bound: %v", got)
	}
}
