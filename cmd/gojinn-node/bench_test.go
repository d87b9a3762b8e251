package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// The node benchmarks compare requests per second through a real node
// (edge, router, runtime, pooled Go hello) with a trivial server for the
// same protocol, measured in the same process on loopback. Each side gets
// a warm-up and then one bounded run; b.N does not matter (run with
// -benchtime 1x). docs/benchmarks.md records the figures.
//
// The load generator, clients and baselines below mirror
// edge/internal/loadgen, which this package cannot import (Go's internal
// rule allows only edge/...). They keep its semantics: closed-loop
// workers, bodies read to the end, requests cut off by the end of the run
// not counted, the same client and server settings. Once loadgen moves to
// a root-level internal/ package, use it here and delete the mirror.
const (
	benchWarmup   = 500 * time.Millisecond
	benchDuration = 3 * time.Second
	benchSlice    = 500 * time.Millisecond
	// benchConcurrency is the number of closed-loop workers on each side.
	// 32 saturates a 2-core machine on loopback (a request takes well
	// under a millisecond, so a handful of workers already keep the
	// server busy) while staying far below the node's limits: 4+ pooled
	// instances with a 1 s queue, 250 streams per HTTP/3 connection. The
	// same number on both sides keeps the comparison fair: the baseline
	// and the node see the same offered load.
	benchConcurrency = 32
	// baselineBody is what the baseline servers answer, like loadgen's.
	baselineBody = "hello, world"
)

// benchNode is an in-process dev node on loopback serving the pooled
// hello example at /*.
type benchNode struct {
	*node
	dataDir string
}

// startBenchNode starts a node with every listener on 127.0.0.1:0 and
// logs discarded (so logging costs nothing it would not cost in
// production at info level), deploys the pooled hello example and waits
// until it serves. The node stops at the end of the benchmark.
func startBenchNode(b *testing.B) *benchNode {
	b.Helper()
	dir := b.TempDir()
	mod := filepath.Join(dir, "hello.pooled.wasm")
	if err := os.WriteFile(mod, runtimetest.BuildGo(b, "examples/hello", true), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := DevConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Edge.HTTP = "127.0.0.1:0"
	cfg.Edge.HTTPS = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	n, err := startNode(b.Context(), cfg, log, true)
	if err != nil {
		b.Fatalf("starting the node: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.stop(ctx)
	})
	if err := deployHello(b.Context(), n, mod); err != nil {
		b.Fatalf("deploying hello: %v", err)
	}
	return &benchNode{node: n, dataDir: cfg.DataDir}
}

// clientTLS returns a TLS configuration that trusts the node's internal CA.
func (n *benchNode) clientTLS(b *testing.B) *tls.Config {
	b.Helper()
	pem, err := edge.ExportCARoot(n.dataDir)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		b.Fatal("the internal CA root holds no certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

// side is one server under load: its URL, a client for it, and the
// protocol and body its answers must have.
type side struct {
	name     string
	url      string
	client   *http.Client
	proto    int // major HTTP version
	wantBody string
}

// newSide closes the client at the end of the benchmark, before the
// servers stop (cleanups run last-in first-out, and servers start first).
func newSide(b *testing.B, name, url string, c *http.Client, proto int, body string) side {
	b.Cleanup(func() {
		c.CloseIdleConnections()
		if closer, ok := c.Transport.(io.Closer); ok {
			if err := closer.Close(); err != nil {
				b.Errorf("closing the %s client: %v", name, err)
			}
		}
	})
	return side{name: name, url: url, client: c, proto: proto, wantBody: body}
}

// check sends one request and fails unless the answer is 200 with the
// expected protocol and body: it proves the load hits the right server.
func (s side) check(b *testing.B) {
	b.Helper()
	resp, err := s.client.Get(s.url)
	if err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != s.proto || string(body) != s.wantBody {
		b.Fatalf("%s: %d over %s, body %q (%v); want 200 over HTTP/%d, body %q",
			s.name, resp.StatusCode, resp.Proto, body, err, s.proto, s.wantBody)
	}
}

// load runs the load generator against s for d and fails on any error or
// non-2xx answer: a run that measures errors measures nothing. A short run
// may complete no request on a starved machine; compare checks the total.
func (s side) load(b *testing.B, d time.Duration) loadResult {
	b.Helper()
	res := runLoad(b.Context(), s.url, s.client, benchConcurrency, d)
	if res.errors != 0 || res.firstErr != nil {
		b.Fatalf("%s: %d requests, %d errors, statuses %v, first error: %v",
			s.name, res.requests, res.errors, res.statuses, res.firstErr)
	}
	return res
}

// compare measures the node and the baseline in alternating slices of
// benchSlice, benchDuration in all for each, after a warm-up of each; the
// machine's background load then weighs on both sides alike. The timer
// covers the measured slices only, so one call reaches any -benchtime of
// a few seconds and b.N stays 1.
func compare(b *testing.B, nodeSide, baseSide side) {
	b.Helper()
	nodeSide.check(b)
	baseSide.check(b)
	nodeSide.load(b, benchWarmup)
	baseSide.load(b, benchWarmup)
	b.ResetTimer()
	b.StopTimer()
	var node, base loadResult
	for range int(benchDuration / benchSlice) {
		for _, run := range []struct {
			s   side
			res *loadResult
		}{{nodeSide, &node}, {baseSide, &base}} {
			b.StartTimer()
			r := run.s.load(b, benchSlice)
			b.StopTimer()
			run.res.add(r)
		}
	}
	node.finish()
	base.finish()
	if node.requests == 0 || base.requests == 0 {
		b.Fatalf("no request completed in %v: node %d, %s %d", benchDuration, node.requests, baseSide.name, base.requests)
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for _, r := range []struct {
		name string
		res  *loadResult
	}{{"node", &node}, {baseSide.name, &base}} {
		b.Logf("%s: %d requests in %v, p50 %v p99 %v, process CPU %v (%v per request)", r.name, r.res.requests,
			r.res.elapsed.Round(time.Millisecond), r.res.p50, r.res.p99, r.res.cpu.Round(time.Millisecond), r.res.cpuPerRequest())
	}
	// ns/op would be the length of the runs, not a cost per request;
	// reporting 0 leaves it out of the output.
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(node.rps, "node_rps")
	b.ReportMetric(base.rps, "baseline_rps")
	b.ReportMetric(node.rps/base.rps, "ratio")
	b.ReportMetric(us(node.p50), "node_p50_us")
	b.ReportMetric(us(node.p99), "node_p99_us")
	b.ReportMetric(us(base.p50), "baseline_p50_us")
	b.ReportMetric(us(base.p99), "baseline_p99_us")
	// CPU per request counts the whole process: the server under load and
	// the load generator (the other server idles). It depends less than
	// req/s on how much CPU a shared machine leaves the benchmark.
	b.ReportMetric(us(node.cpuPerRequest()), "node_cpu_us/req")
	b.ReportMetric(us(base.cpuPerRequest()), "baseline_cpu_us/req")
}

// BenchmarkNodeVsNativeH1 compares the node's plain-HTTP listener
// (HTTP/1.1, keep-alive) serving the pooled Go hello with a net/http
// hello-world server. Target: ratio >= 0.6.
func BenchmarkNodeVsNativeH1(b *testing.B) {
	n := startBenchNode(b)
	_, _, plain := n.edge.Addrs()
	baseURL := startNativeHello(b)
	nodeSide := newSide(b, "node", "http://"+plain+"/", newH1Client(benchConcurrency), 1, "Hello, world!\n")
	baseSide := newSide(b, "native net/http", baseURL, newH1Client(benchConcurrency), 1, baselineBody)
	compare(b, nodeSide, baseSide)
}

// BenchmarkNodeVsBareH3 compares the node's HTTP/3 listener serving the
// pooled Go hello with a bare quic-go HTTP/3 hello-world server. Each
// side's client multiplexes every worker over one QUIC connection.
// Target: ratio >= 0.8.
func BenchmarkNodeVsBareH3(b *testing.B) {
	n := startBenchNode(b)
	_, h3, _ := n.edge.Addrs()
	clientTLS := n.clientTLS(b)
	baseURL := startBareH3Hello(b, n.tls.QUICConfig())
	nodeSide := newSide(b, "node", "https://"+h3+"/", newH3Client(clientTLS), 3, "Hello, world!\n")
	baseSide := newSide(b, "bare quic-go", baseURL, newH3Client(clientTLS), 3, baselineBody)
	compare(b, nodeSide, baseSide)
}

// The mirror of edge/internal/loadgen starts here.

func helloHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, baselineBody)
}

// startNativeHello serves helloHandler with net/http on loopback until
// the end of the benchmark and returns its URL.
func startNativeHello(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(helloHandler), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	serveUntilCleanup(b, "native baseline", func() error { return srv.Serve(ln) }, srv.Close)
	return "http://" + ln.Addr().String() + "/"
}

// startBareH3Hello serves helloHandler with a bare quic-go http3.Server
// (0-RTT off, as on the edge) until the end of the benchmark and returns
// its URL. It borrows the node's QUIC TLS configuration so one client
// configuration trusts both servers; the certificate costs one handshake
// per run, nothing per request.
func startBareH3Hello(b *testing.B, tlsCfg *tls.Config) string {
	b.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	srv := &http3.Server{
		Handler:   http.HandlerFunc(helloHandler),
		TLSConfig: tlsCfg,
		QUICConfig: &quic.Config{
			Allow0RTT:            false,
			HandshakeIdleTimeout: 5 * time.Second,
			MaxIdleTimeout:       30 * time.Second,
			MaxIncomingStreams:   10000,
		},
		IdleTimeout: 2 * time.Minute,
	}
	// The server closes its QUIC listener, not the socket it was given.
	serveUntilCleanup(b, "HTTP/3 baseline", func() error { return srv.Serve(conn) },
		func() error { return errors.Join(srv.Close(), conn.Close()) })
	return "https://" + conn.LocalAddr().String() + "/"
}

// serveUntilCleanup runs serve on a goroutine that ends when stop runs at
// the end of the benchmark, and waits for it.
func serveUntilCleanup(b *testing.B, name string, serve, stop func() error) {
	done := make(chan error, 1)
	go func() { done <- serve() }()
	b.Cleanup(func() {
		serr := stop()
		err := <-done
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			serr = errors.Join(serr, err)
		}
		if serr != nil {
			b.Errorf("%s: %v", name, serr)
		}
	})
}

// newH1Client speaks HTTP/1.1 only and keeps conc idle connections alive,
// so conc workers reuse their connections.
func newH1Client(conc int) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: dialer.DialContext, Protocols: &protocols,
		MaxIdleConns: conc, MaxIdleConnsPerHost: conc, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true,
	}}
}

// newH3Client speaks HTTP/3; all requests to one host share one QUIC
// connection. It never attempts 0-RTT (no session cache).
func newH3Client(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http3.Transport{
		TLSClientConfig: tlsCfg.Clone(),
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: 5 * time.Second,
			MaxIdleTimeout:       30 * time.Second,
			KeepAlivePeriod:      10 * time.Second,
		},
		DisableCompression: true,
	}}
}

// loadResult summarizes one run or several, as loadgen.Result does.
type loadResult struct {
	requests, errors int64 // completed requests; those without a 2xx answer
	statuses         map[int]int64
	firstErr         error
	elapsed          time.Duration
	cpu              time.Duration   // the process's user+system CPU time
	latencies        []time.Duration // of requests that got a response
	// Set by finish.
	rps      float64
	p50, p99 time.Duration
}

// add merges o, a run after r's, into r.
func (r *loadResult) add(o loadResult) {
	r.requests += o.requests
	r.errors += o.errors
	if r.statuses == nil {
		r.statuses = map[int]int64{}
	}
	for code, n := range o.statuses {
		r.statuses[code] += n
	}
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.latencies = append(r.latencies, o.latencies...)
}

// finish computes the rate and percentiles.
func (r *loadResult) finish() {
	if r.elapsed > 0 {
		r.rps = float64(r.requests) / r.elapsed.Seconds()
	}
	slices.Sort(r.latencies)
	pct := func(q float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(int(q*float64(len(r.latencies))), len(r.latencies)-1)]
	}
	r.p50, r.p99 = pct(0.50), pct(0.99)
}

// loadWorker is one worker's tally; workers share nothing while running.
type loadWorker struct {
	requests, errors int64
	statuses         map[int]int64
	latencies        []time.Duration
	firstErr         error
}

// runLoad sends GET url from conc closed-loop workers until d has passed
// or ctx ends, and returns when every worker has.
func runLoad(ctx context.Context, url string, c *http.Client, conc int, d time.Duration) loadResult {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	workers := make([]*loadWorker, conc)
	var wg sync.WaitGroup
	cpu0 := processCPU()
	start := time.Now()
	for i := range workers {
		w := &loadWorker{statuses: map[int]int64{}, latencies: make([]time.Duration, 0, 1<<12)}
		workers[i] = w
		wg.Go(func() { w.loop(runCtx, url, c) })
	}
	wg.Wait()
	var res loadResult
	for _, w := range workers {
		res.add(loadResult{requests: w.requests, errors: w.errors, statuses: w.statuses, firstErr: w.firstErr, latencies: w.latencies})
	}
	res.elapsed = time.Since(start)
	res.cpu = processCPU() - cpu0
	if err := ctx.Err(); err != nil && res.firstErr == nil {
		res.firstErr = fmt.Errorf("run ended early after %v: %w", res.elapsed, err)
	}
	res.finish()
	return res
}

// processCPU returns the user and system CPU time the process has used,
// or 0 if the kernel will not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerRequest is the process's CPU time per completed request.
func (r *loadResult) cpuPerRequest() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.requests)
}

// loop is one worker: it owns w and returns when ctx ends.
func (w *loadWorker) loop(ctx context.Context, url string, c *http.Client) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			w.fail(err)
			return
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return // cut off by the end of the run
			}
			w.fail(err)
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(fmt.Errorf("reading the body of %s: %w", resp.Status, err))
			continue
		}
		w.latencies = append(w.latencies, time.Since(t0))
		w.requests++
		w.statuses[resp.StatusCode]++
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			w.errors++
		}
	}
}

func (w *loadWorker) fail(err error) {
	w.requests++
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}
