package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/internal/loadgen"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The node benchmarks compare requests per second through a real node
// (edge, router, runtime, pooled Go hello) with a trivial server for the
// same protocol, measured in the same process on loopback. Each side gets
// a warm-up and then one bounded run; b.N does not matter (run with
// -benchtime 1x). docs/benchmarks.md records the figures.
// The load generator, clients and baselines are internal/loadgen's.
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
	// baselineBody is what the baseline servers answer.
	baselineBody = loadgen.HelloBody
)

// benchExamples are the pooled Go guests the node benchmarks serve, each
// answering "Hello, world!\n": examples/hello (a net/http handler) and
// examples/hello-raw (the same through the SDK's raw handler API).
var benchExamples = []string{"hello", "hello-raw"}

// benchNode is an in-process dev node on loopback serving a pooled hello
// example at /*.
type benchNode struct {
	*node
	dataDir string
}

// startBenchNode starts a node with every listener on 127.0.0.1:0 and
// logs discarded (so logging costs nothing it would not cost in
// production at info level), deploys the pooled example (examples/NAME)
// as the hello function and waits until it serves. The node stops at the
// end of the benchmark.
func startBenchNode(b *testing.B, example string) *benchNode {
	b.Helper()
	dir := b.TempDir()
	mod := filepath.Join(dir, "hello.pooled.wasm")
	if err := os.WriteFile(mod, runtimetest.BuildGo(b, "examples/"+example, true), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := DevConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Edge.HTTP = "127.0.0.1:0"
	cfg.Edge.HTTPS = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	// As in production (DefaultConfig): no access log line per request.
	cfg.Edge.AccessLog = false
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

// counterSeconds sums the counter name (in seconds) over its labels in the
// node's metrics registry; 0 if it has no series yet.
func (n *benchNode) counterSeconds(b *testing.B, name string) time.Duration {
	b.Helper()
	mfs, err := n.metrics.Gather()
	if err != nil {
		b.Fatalf("gathering the node's metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return time.Duration(sum * float64(time.Second))
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
	// guestCPU, for a node, reads the guests' CPU time so far (requests
	// and idle calls) from its metrics; nil for a baseline.
	guestCPU func() (requests, idle time.Duration)
}

// newSide closes the client at the end of the benchmark, before the
// servers stop (cleanups run last-in first-out, and servers start first).
func newSide(b *testing.B, name, url string, c *http.Client, proto int, body string) side {
	b.Cleanup(func() {
		if err := loadgen.CloseClient(c); err != nil {
			b.Errorf("closing the %s client: %v", name, err)
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
	var guest0, idle0 time.Duration
	if s.guestCPU != nil {
		guest0, idle0 = s.guestCPU()
	}
	before := processCPU()
	res, err := loadgen.Run(b.Context(), loadgen.Config{URL: s.url, Client: s.client, Concurrency: benchConcurrency, Duration: d})
	cpu := processCPU() - before
	var guest, idle time.Duration
	if s.guestCPU != nil {
		guest, idle = s.guestCPU()
		guest, idle = guest-guest0, idle-idle0
	}
	if err != nil || res.Errors != 0 {
		b.Fatalf("%s: %d requests, %d errors, statuses %v, first error: %v (%v)",
			s.name, res.Requests, res.Errors, res.Statuses, res.FirstError, err)
	}
	return loadResult{requests: res.Requests, elapsed: res.Duration, cpu: cpu, guestCPU: guest, idleCPU: idle,
		p50s: []time.Duration{res.P50}, p99s: []time.Duration{res.P99}}
}

// loadResult adds up the slices of one side. Percentiles of the whole are
// approximated from the slices' own: the median of their p50s and the
// largest p99.
type loadResult struct {
	requests int64
	elapsed  time.Duration
	cpu      time.Duration
	// guestCPU and idleCPU are the guests' share of cpu (a node only):
	// their requests, and their idle calls between requests.
	guestCPU, idleCPU time.Duration
	p50s, p99s        []time.Duration
	rps               float64
	p50, p99          time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.requests += o.requests
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.guestCPU += o.guestCPU
	r.idleCPU += o.idleCPU
	r.p50s = append(r.p50s, o.p50s...)
	r.p99s = append(r.p99s, o.p99s...)
}

func (r *loadResult) finish() {
	if r.elapsed > 0 {
		r.rps = float64(r.requests) / r.elapsed.Seconds()
	}
	if len(r.p50s) > 0 {
		slices.Sort(r.p50s)
		r.p50 = r.p50s[len(r.p50s)/2]
		r.p99 = slices.Max(r.p99s)
	}
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
func (r *loadResult) cpuPerRequest() time.Duration { return r.perRequest(r.cpu) }

// perRequest divides d by the completed requests.
func (r *loadResult) perRequest(d time.Duration) time.Duration {
	if r.requests == 0 {
		return 0
	}
	return d / time.Duration(r.requests)
}

// startBaseline starts a loadgen baseline that stops with the benchmark.
func startBaseline(b *testing.B, start func() (*loadgen.Baseline, error)) *loadgen.Baseline {
	b.Helper()
	base, err := start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := base.Close(); err != nil {
			b.Errorf("stopping the baseline: %v", err)
		}
	})
	return base
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
	// pairs are the ratios of each node slice and the baseline slice right
	// after it: their spread shows how much the machine moved during the
	// run (the reported ratio is over the totals).
	var pairs []float64
	for range int(benchDuration / benchSlice) {
		var rates [2]float64
		for i, run := range []struct {
			s   side
			res *loadResult
		}{{nodeSide, &node}, {baseSide, &base}} {
			b.StartTimer()
			r := run.s.load(b, benchSlice)
			b.StopTimer()
			run.res.add(r)
			if r.elapsed > 0 {
				rates[i] = float64(r.requests) / r.elapsed.Seconds()
			}
		}
		if rates[1] > 0 {
			pairs = append(pairs, rates[0]/rates[1])
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
	if len(pairs) > 0 {
		b.ReportMetric(slices.Min(pairs), "ratio_slice_min")
		b.ReportMetric(slices.Max(pairs), "ratio_slice_max")
	}
	b.ReportMetric(us(node.p50), "node_p50_us")
	b.ReportMetric(us(node.p99), "node_p99_us")
	b.ReportMetric(us(base.p50), "baseline_p50_us")
	b.ReportMetric(us(base.p99), "baseline_p99_us")
	// CPU per request counts the whole process: the server under load and
	// the load generator (the other server idles). It depends less than
	// req/s on how much CPU a shared machine leaves the benchmark.
	b.ReportMetric(us(node.cpuPerRequest()), "node_cpu_us/req")
	b.ReportMetric(us(base.cpuPerRequest()), "baseline_cpu_us/req")
	// The guest's share of the node's CPU per request, as the runtime
	// measures it on the guest's thread (gojinn_function_cpu_seconds_total
	// and gojinn_idle_cpu_seconds_total): what the guest costs under this
	// load, which is several times what it costs alone (docs/benchmarks.md).
	b.ReportMetric(us(node.perRequest(node.guestCPU)), "node_guest_cpu_us/req")
	b.ReportMetric(us(node.perRequest(node.idleCPU)), "node_idle_cpu_us/req")
}

// nodeVs compares, for each example in benchExamples, the node with a
// baseline server over one protocol.
type nodeVs struct {
	major    int                               // the protocol both sides must answer with
	baseline string                            // the baseline's name in reports
	start    func() (*loadgen.Baseline, error) // starts the baseline
	// nodeURL picks the node's URL from its listeners' addresses.
	nodeURL func(https, h3, plain string) string
	// client makes a client trusting tlsCfg (nil for plain HTTP).
	client func(tlsCfg *tls.Config) *http.Client
}

func (v nodeVs) run(b *testing.B) {
	for _, example := range benchExamples {
		b.Run(example, func(b *testing.B) {
			n := startBenchNode(b, example)
			var nodeTLS *tls.Config
			url := v.nodeURL(n.edge.Addrs())
			if strings.HasPrefix(url, "https://") {
				nodeTLS = n.clientTLS(b)
			}
			base := startBaseline(b, v.start)
			nodeSide := newSide(b, "node", url, v.client(nodeTLS), v.major, "Hello, world!\n")
			nodeSide.guestCPU = func() (time.Duration, time.Duration) {
				return n.counterSeconds(b, "gojinn_function_cpu_seconds_total"), n.counterSeconds(b, "gojinn_idle_cpu_seconds_total")
			}
			baseSide := newSide(b, v.baseline, base.URL, v.client(base.ClientTLS), v.major, baselineBody)
			compare(b, nodeSide, baseSide)
		})
	}
}

// BenchmarkNodeVsNativeH1 compares the node's plain-HTTP listener
// (HTTP/1.1, keep-alive) serving the pooled Go hello with a net/http
// hello-world server. Target: ratio >= 0.6.
func BenchmarkNodeVsNativeH1(b *testing.B) {
	nodeVs{
		major: 1, baseline: "native net/http", start: loadgen.StartNativeHello,
		nodeURL: func(_, _, plain string) string { return "http://" + plain + "/" },
		client:  func(c *tls.Config) *http.Client { return loadgen.NewH1Client(benchConcurrency, c) },
	}.run(b)
}

// BenchmarkNodeVsNativeH2 compares the node's HTTPS listener over HTTP/2
// serving the pooled Go hello with a net/http HTTP/2 server over TLS. Each
// side's client multiplexes every worker over one TCP connection. No
// target: issue 3 sets none for HTTP/2.
func BenchmarkNodeVsNativeH2(b *testing.B) {
	nodeVs{
		major: 2, baseline: "native net/http", start: loadgen.StartNativeH2Hello,
		nodeURL: func(https, _, _ string) string { return "https://" + https + "/" },
		client:  loadgen.NewH2Client,
	}.run(b)
}

// BenchmarkNodeVsBareH3 compares the node's HTTP/3 listener serving the
// pooled Go hello with a bare quic-go HTTP/3 hello-world server. Each
// side's client multiplexes every worker over one QUIC connection.
// Target: ratio >= 0.8.
func BenchmarkNodeVsBareH3(b *testing.B) {
	nodeVs{
		major: 3, baseline: "bare quic-go", start: loadgen.StartBareH3Hello,
		nodeURL: func(_, h3, _ string) string { return "https://" + h3 + "/" },
		client:  loadgen.NewH3Client,
	}.run(b)
}
