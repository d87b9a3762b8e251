package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/storage"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// devNode is a `gojinn-node dev` started by a test through run().
type devNode struct {
	t                      *testing.T
	data                   string
	http, https, h3, admin string
	token                  string
	cancel                 context.CancelFunc
	done                   chan int
	stderr                 *lockedBuffer
	h1Client, h2, h3Client *http.Client
	plainClient            *http.Client
	closeH3                func()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var bannerRE = regexp.MustCompile(`^\s+(http|https|http3|admin):\s+(?:https?://)?([^/ ]+)/?`)

// startDev runs a dev node on free ports over data and waits for its
// banner. module is deployed as hello at /*.
func startDev(t *testing.T, data, module string) *devNode {
	t.Helper()
	n := &devNode{t: t, data: data}
	n.launch([]string{"dev", "--data", data, "--module", module,
		"--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, os.Getenv)
	if n.admin == "" || n.token == "" || n.https == "" || n.h3 == "" || n.http == "" {
		n.cancel()
		t.Fatalf("incomplete banner (admin %q https %q h3 %q http %q token set %v)\nstderr: %s", n.admin, n.https, n.h3, n.http, n.token != "", n.stderr.String())
	}
	t.Cleanup(n.stop)

	// Clients that trust the node's internal CA, exported by the CLI.
	var pemOut, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ca", "export", "--data", data}, &pemOut, &errOut); code != 0 {
		t.Fatalf("ca export: %d %s", code, errOut.String())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemOut.Bytes()) {
		t.Fatalf("ca export printed no certificate: %q", pemOut.String())
	}
	tc := &tls.Config{RootCAs: pool}
	n.h1Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	n.h2 = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: true}}
	h3t := &http3.Transport{TLSClientConfig: tc.Clone(), QUICConfig: &quic.Config{}}
	n.h3Client = &http.Client{Timeout: 30 * time.Second, Transport: h3t}
	n.closeH3 = func() { _ = h3t.Close() }
	n.plainClient = &http.Client{Timeout: 30 * time.Second}
	return n
}

// launch runs the node command args through runEnv (with env), reads its
// banner up to the internal CA line, records the addresses and the admin
// token, and returns the banner's lines for callers that want more.
func (n *devNode) launch(args []string, env func(string) string) []string {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done, n.stderr = cancel, make(chan int, 1), &lockedBuffer{}
	pr, pw := io.Pipe()
	go func() {
		n.done <- runEnv(ctx, args, pw, n.stderr, env)
		pw.Close()
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if m := bannerRE.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "http":
				n.http = m[2]
			case "https":
				n.https = m[2]
			case "http3":
				n.h3 = m[2]
			case "admin":
				n.admin = m[2]
			}
		}
		if i := strings.Index(line, "gjn_"); i >= 0 {
			n.token = strings.Fields(line[i:])[0]
		}
		if strings.Contains(line, "trust the internal CA") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return lines
}

func (n *devNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	n.closeH3()
	n.h1Client.CloseIdleConnections()
	n.h2.CloseIdleConnections()
	select {
	case code := <-n.done:
		if code != 0 {
			n.t.Errorf("node exited with %d\nstderr: %s", code, n.stderr.String())
		}
	case <-time.After(60 * time.Second):
		n.t.Fatal("node did not shut down within 60s")
	}
}

// cli runs a client subcommand against the node and returns its stdout.
func (n *devNode) cli(wantCode int, args ...string) string {
	n.t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		switch k {
		case "GOJINN_ADDR":
			return "http://" + n.admin
		case "GOJINN_TOKEN":
			return n.token
		}
		return ""
	}
	code := runEnv(context.Background(), args, &out, &errb, env)
	if code != wantCode {
		n.t.Fatalf("gojinn-node %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

func (n *devNode) get(c *http.Client, url string) (int, string, http.Header) {
	n.t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		n.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// getTraced GETs url over plain HTTP with a W3C traceparent naming trace
// id tid (and any more headers, as name-value pairs); it returns the
// status and body.
func (n *devNode) getTraced(url, tid string, headers ...string) (int, string) {
	n.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+tid+"-00f067aa0ba902b7-01")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := n.plainClient.Do(req)
	if err != nil {
		n.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeModule(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The whole single-node story: a dev node answers on HTTP/1.1, 2 and 3
// with certificates from its internal CA; the CLI deploys the examples,
// lists, rolls back and removes them; a bad module is refused with the
// compiler's reason while the previous version serves; after a restart
// every function is still there and answers.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Go examples (about a minute on a cold cache); make test runs it")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hello := writeModule(t, dir, "hello.wasm", runtimetest.BuildGo(t, "examples/hello", true))
	echo := writeModule(t, dir, "echo.wasm", runtimetest.BuildGo(t, "examples/echo", true))
	jsonapi := writeModule(t, dir, "jsonapi.wasm", runtimetest.BuildGo(t, "examples/jsonapi", false))
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	bad := writeModule(t, dir, "bad.wasm", []byte("\x00asm\x01\x00\x00\x00\x01\xff"))

	n := startDev(t, data, hello)

	// hello at /* on every protocol.
	for name, c := range map[string]struct {
		client *http.Client
		url    string
		proto  string
	}{
		"plain h1": {n.plainClient, "http://" + n.http, "HTTP/1.1"},
		"tls h1":   {n.h1Client, "https://" + n.https, "HTTP/1.1"},
		"tls h2":   {n.h2, "https://" + n.https, "HTTP/2.0"},
		"h3":       {n.h3Client, "https://" + n.h3, "HTTP/3.0"},
	} {
		resp, err := c.client.Get(c.url + "/?name=" + strings.ReplaceAll(name, " ", "-"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "Hello, " + strings.ReplaceAll(name, " ", "-") + "!\n"
		if resp.StatusCode != 200 || string(b) != want || resp.Proto != c.proto {
			t.Fatalf("%s: %d %s %q, want 200 %s %q", name, resp.StatusCode, resp.Proto, b, c.proto, want)
		}
	}

	// Deploy the other examples through the CLI.
	out := n.cli(0, "deploy", "echo", echo, "--mode", "pooled", "--route", "/echo/*", "--env", "SECRET_TOKEN=s3cr3t-value")
	if !strings.Contains(out, "deployed echo version 1") || !strings.Contains(out, "sent "+echo) {
		t.Fatalf("deploy echo: %q", out)
	}
	n.cli(0, "deploy", "todos", jsonapi, "--route", "POST,GET /todos/*", "--timeout", "5s", "--memory", "64MiB")
	n.cli(0, "deploy", "raw", raw, "--route", "/raw")
	code, body, _ := n.get(n.h2, "https://"+n.https+"/echo/raw?x=1")
	if code != 200 {
		t.Fatalf("echo: %d %q", code, body)
	}
	resp, err := n.h3Client.Post("https://"+n.h3+"/todos", "application/json", strings.NewReader(`{"title":"ship it"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(string(b), `"title":"ship it"`) {
		t.Fatalf("todos over h3: %d %q", resp.StatusCode, b)
	}
	if code, body, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 200 || body == "" {
		t.Fatalf("raw: %d %q", code, body)
	}

	// List, as a table and as JSON; env values never appear.
	table := n.cli(0, "functions")
	for _, want := range []string{"echo", "hello", "raw", "todos", "/echo/*", "pooled"} {
		if !strings.Contains(table, want) {
			t.Fatalf("functions table lacks %q:\n%s", want, table)
		}
	}
	var list []cluster.FunctionSummary
	if err := json.Unmarshal([]byte(n.cli(0, "functions", "--json")), &list); err != nil || len(list) != 4 {
		t.Fatalf("functions --json: %v %+v", err, list)
	}
	if show := n.cli(0, "functions", "show", "echo"); !strings.Contains(show, "SECRET_TOKEN") || strings.Contains(show, "s3cr3t-value") {
		t.Fatalf("show must list env keys and hide values:\n%s", show)
	}
	// Flags may come before the subcommand.
	var shown storage.Function
	if err := json.Unmarshal([]byte(n.cli(0, "functions", "--json", "show", "echo")), &shown); err != nil || shown.Name != "echo" {
		t.Fatalf("functions --json show echo: %v %+v", err, shown)
	}

	// A bad module is refused with the compiler's reason; version 1 serves.
	out = n.cli(1, "deploy", "echo", bad, "--mode", "pooled", "--route", "/echo/*")
	if !strings.Contains(out, "invalid module") {
		t.Fatalf("bad deploy: %q, want the compiler's reason", out)
	}
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/echo/raw"); code != 200 {
		t.Fatalf("echo after a refused deploy: %d", code)
	}

	// Version 2 of echo moves it to /echo2/*; rollback brings /echo/* back.
	// The node has the module already: the CLI says it sent nothing.
	if out := n.cli(0, "deploy", "echo", echo, "--mode", "pooled", "--route", "/echo2/*"); !strings.Contains(out, "the node already has it, not uploaded") || strings.Contains(out, "sent "+echo) {
		t.Fatalf("deploy of a module the node has: %q", out)
	}
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/echo2/raw"); code != 200 {
		t.Fatalf("echo v2: %d", code)
	}
	if v := n.cli(0, "functions", "versions", "echo"); !strings.Contains(v, "2") {
		t.Fatalf("versions: %q", v)
	}
	if out := n.cli(0, "functions", "rollback", "echo"); !strings.Contains(out, "version 1") {
		t.Fatalf("rollback: %q", out)
	}
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/echo/raw"); code != 200 {
		t.Fatalf("echo after rollback: %d", code)
	}
	if show := n.cli(0, "functions", "show", "echo"); !strings.Contains(show, "active version  1 (kept: 1, 2)") {
		t.Fatalf("show after the rollback:\n%s", show)
	}

	// Remove raw: its route goes; the unknown function's errors are clear.
	n.cli(0, "functions", "rm", "raw")
	if out := n.cli(1, "functions", "show", "raw"); !strings.Contains(out, "raw") {
		t.Fatalf("show removed: %q", out)
	}
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 200 {
		// /raw now falls through to hello's /* route.
		t.Fatalf("/raw after rm: %d, want hello's answer", code)
	}
	status := n.cli(0, "status")
	if !strings.Contains(status, "Leader") || !strings.Contains(status, "functions") {
		t.Fatalf("status: %q", status)
	}

	// Restart over the same data: everything is still there and answers.
	n.stop()
	n = startDev(t, data, hello)
	if code, body, _ := n.get(n.h2, "https://"+n.https+"/echo/raw?x=restart"); code != 200 {
		t.Fatalf("echo after restart: %d %q", code, body)
	}
	if code, body, _ := n.get(n.h3Client, "https://"+n.h3+"/?name=again"); code != 200 || body != "Hello, again!\n" {
		t.Fatalf("hello after restart: %d %q", code, body)
	}
	var after []cluster.FunctionSummary
	if err := json.Unmarshal([]byte(n.cli(0, "functions", "--json")), &after); err != nil || len(after) != 3 {
		t.Fatalf("functions after restart: %v %+v", err, after)
	}
	for _, f := range after {
		if f.Name == "hello" && f.Versions != 1 {
			t.Fatalf("restarting dev redeployed hello: %+v", f)
		}
	}
}

// A backup taken through the CLI restores functions that were removed
// since, and they answer again.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "raw", raw, "--route", "/raw")
	backup := filepath.Join(dir, "backup.tar")
	if out := n.cli(0, "backup", backup); !strings.Contains(out, "wrote") {
		t.Fatalf("backup: %q", out)
	}
	// --local: the node's state as it is, the same backup here; --json
	// says what was written.
	local := filepath.Join(dir, "local.tar")
	var wrote struct {
		Wrote string `json:"wrote"`
		Bytes int64  `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(n.cli(0, "backup", local, "--local", "--json")), &wrote); err != nil || wrote.Wrote != local || wrote.Bytes != fileSize(t, local) {
		t.Fatalf("backup --local --json: %+v %v (file %d bytes)", wrote, err, fileSize(t, local))
	}
	if a, b := fileSize(t, backup), fileSize(t, local); a != b || a == 0 {
		t.Fatalf("backup %d bytes, backup --local %d bytes: want the same size", a, b)
	}
	missing := filepath.Join(dir, "no-such-dir", "b.tar")
	if out := n.cli(1, "backup", missing); !strings.Contains(out, "cannot write the backup to "+missing) || strings.Contains(out, ".gojinn-backup-") {
		t.Fatalf("backup into a missing directory: %q, want the target named, not the temporary file", out)
	}
	n.cli(0, "functions", "rm", "raw")
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 404 {
		t.Fatalf("after rm: %d", code)
	}
	notBackup := writeModule(t, dir, "junk.tar", []byte("not a tar"))
	if out := n.cli(1, "restore", notBackup); !strings.Contains(out, "not a valid gojinn backup") {
		t.Fatalf("restoring junk: %q", out)
	}
	if out := n.cli(0, "restore", backup, "--json"); !strings.Contains(out, `"restored": "`+backup+`"`) {
		t.Fatalf("restore --json: %q", out)
	}
	// The restore answers once its functions serve, as a deploy does.
	if code, body, _ := n.get(n.plainClient, "http://"+n.http+"/raw"); code != 200 {
		t.Fatalf("restored function right after the restore: %d %q", code, body)
	}
}

// /metrics on the admin listener needs the token and, after some
// requests, carries the edge, runtime and Raft series, parsed with the
// Prometheus text parser.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "raw", raw, "--route", "/raw")
	n.cli(0, "deploy", "rawtwin", raw, "--route", "/rawtwin")
	tiny := writeModule(t, dir, "tiny.wasm", runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"))
	n.cli(0, "deploy", "rawpool", tiny, "--route", "/rawpool", "--mode", "pooled")
	for range 3 {
		for _, path := range []string{"/raw", "/rawpool"} {
			if code, _, _ := n.get(n.plainClient, "http://"+n.http+path); code != 200 {
				t.Fatalf("%s: %d", path, code)
			}
		}
	}
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/nothing-here"); code != 404 {
		t.Fatalf("unrouted: %d", code)
	}
	// TLS over TCP and QUIC, and a KV write, for their series.
	for _, c := range []struct {
		client *http.Client
		url    string
	}{{n.h2, "https://" + n.https + "/raw"}, {n.h3Client, "https://" + n.h3 + "/raw"}} {
		if code, _, _ := n.get(c.client, c.url); code != 200 {
			t.Fatalf("%s: %d", c.url, code)
		}
	}
	n.cli(0, "kv", "put", "raw", "k", "v")
	if code, _, _ := n.get(n.plainClient, "http://"+n.admin+"/metrics"); code != http.StatusUnauthorized {
		t.Fatalf("metrics without the token: %d", code)
	}
	families := n.scrape()
	value := func(name string, labels map[string]string) (float64, bool) {
		return metricValue(families, name, labels)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"gojinn_invocations_total", map[string]string{"function": "raw", "outcome": "ok"}, 3},
		{"gojinn_function_duration_seconds", map[string]string{"function": "raw", "outcome": "ok"}, 3},
		{"gojinn_edge_requests_total", map[string]string{"protocol": "h1", "code": "200"}, 3},
		{"gojinn_edge_requests_total", map[string]string{"protocol": "h1", "code": "404"}, 1},
		{"gojinn_raft_state", map[string]string{"state": "Leader"}, 1},
		{"gojinn_raft_applied_index", nil, 1},
		{"gojinn_functions_loaded", nil, 1},
		{"gojinn_function_cpu_seconds_total", map[string]string{"function": "raw"}, 0},
		// The runtime's own series: isolated mode makes a sandbox per
		// request, the pool one for all three; a function with the same
		// module bytes shares the compiled code.
		{"gojinn_instantiations_total", map[string]string{"function": "raw", "outcome": "ok"}, 3},
		{"gojinn_instantiations_total", map[string]string{"function": "rawpool", "outcome": "ok"}, 1},
		{"gojinn_pool_wait_seconds", map[string]string{"function": "rawpool"}, 3},
		{"gojinn_compilations_total", map[string]string{"function": "raw", "source": "compiled", "outcome": "ok"}, 1},
		{"gojinn_compilations_total", map[string]string{"function": "rawtwin", "source": "memory", "outcome": "ok"}, 1},
		{"gojinn_compile_seconds", map[string]string{"source": "compiled"}, 1},
		{"gojinn_active_sandboxes", map[string]string{"function": "rawpool"}, 1},
		{"gojinn_tls_handshakes_total", map[string]string{"transport": "tcp", "result": "ok"}, 1},
		{"gojinn_tls_handshakes_total", map[string]string{"transport": "quic", "result": "ok"}, 1},
		{"gojinn_tls_certificate_expiry_timestamp_seconds", map[string]string{"name": "localhost"}, float64(time.Now().Unix())},
		{"gojinn_kv_operations_total", map[string]string{"op": "put", "result": "ok"}, 1},
	} {
		v, ok := value(c.name, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (present %v), want >= %v", c.name, c.labels, v, ok, c.min)
		}
	}
	// Bounded labels: no series carries a request path.
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "nothing-here") {
					t.Errorf("%s has a label with a request path: %s=%s", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// scrape reads the node's /metrics with the admin token and parses it
// with the Prometheus text parser.
func (n *devNode) scrape() map[string]*dto.MetricFamily {
	n.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.plainClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		n.t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// metricValue is the value of the first series of name whose labels
// include labels (a histogram's sample count), and whether there is one.
func metricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestHelloRawEndToEnd serves examples/hello-raw (the SDK's raw handler
// API) through a dev node: as the hello function at /*, and deployed by the
// CLI in pooled mode with a copy-on-write reset, over HTTP/1.1 and HTTP/3.
// Every answer names its own request's caller.
func TestHelloRawEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go example and starts a node; make test runs it")
	}
	dir := t.TempDir()
	mod := writeModule(t, dir, "hello-raw.wasm", runtimetest.BuildGo(t, "examples/hello-raw", true))
	n := startDev(t, filepath.Join(dir, "data"), mod)
	if out := n.cli(0, "deploy", "rawcow", mod, "--mode", "pooled", "--reset", "cow", "--route", "/cow/*"); !strings.Contains(out, "deployed rawcow version 1") {
		t.Fatalf("deploy: %q", out)
	}
	for i := range 20 {
		for _, c := range []struct {
			client *http.Client
			url    string
		}{{n.plainClient, "http://" + n.http + "/"}, {n.h3Client, "https://" + n.h3 + "/cow/x"}} {
			name := fmt.Sprintf("caller-%d", i)
			if i%5 == 0 {
				name = "" // the default
			}
			code, body, hdr := n.get(c.client, c.url+"?name="+name)
			want := "Hello, " + cmp.Or(name, "world") + "!\n"
			if code != 200 || body != want || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("%s?name=%s: %d %q %q, want 200 %q", c.url, name, code, body, hdr.Get("Content-Type"), want)
			}
		}
	}
}

// dev starts, without its example, in a data directory where another
// function serves the example's route: the user's function keeps serving
// and the log says why the example is missing.
func TestDevKeepsAUserFunctionAtRoot(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	n := startDev(t, data, "")
	if out := n.cli(0, "deploy", "mine", raw, "--route", "/*"); !strings.Contains(out, ": serving\n") {
		t.Fatalf("deploy with a route: %q", out)
	}
	// Without a route the deploy is ready but serves nothing: the CLI
	// says so rather than "serving".
	if out := n.cli(0, "deploy", "unrouted", raw); !strings.Contains(out, "no route reaches it") {
		t.Fatalf("deploy without a route: %q", out)
	}
	n.stop()

	n = startDev(t, data, raw) // the example would be deployed as hello at /*
	code, body, _ := n.get(n.plainClient, "http://"+n.http+"/anything")
	if code != 200 {
		t.Fatalf("the user's function at /*: %d %q", code, body)
	}
	if out := n.cli(0, "functions", "--json"); strings.Contains(out, `"hello"`) || !strings.Contains(out, `"mine"`) {
		t.Fatalf("functions after the restart: %s", out)
	}
	if !strings.Contains(n.stderr.String(), "the example hello function was not deployed") {
		t.Fatalf("no warning about the example in the log:\n%s", n.stderr.String())
	}
}

// A removed function's series leave /metrics, the edge's and the
// runtime's; another function's stay.
func TestMetricsOfRemovedFunctionsGo(t *testing.T) {
	dir := t.TempDir()
	raw := writeModule(t, dir, "raw.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "gone", raw, "--route", "/gone")
	n.cli(0, "deploy", "kept", raw, "--route", "/kept")
	for _, p := range []string{"/gone", "/kept"} {
		if code, body, _ := n.get(n.plainClient, "http://"+n.http+p); code != 200 {
			t.Fatalf("%s: %d %q", p, code, body)
		}
	}
	seriesOf := func(fn string) []string {
		var names []string
		for name, f := range n.scrape() {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "function" && l.GetValue() == fn {
						names = append(names, name)
					}
				}
			}
		}
		return names
	}
	if s := seriesOf("gone"); !slices.Contains(s, "gojinn_invocations_total") {
		t.Fatalf("before the removal, series of gone: %v", s)
	}
	n.cli(0, "functions", "rm", "gone")
	deadline := time.Now().Add(10 * time.Second)
	for s := seriesOf("gone"); len(s) > 0; s = seriesOf("gone") {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the removal, series of gone remain: %v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := seriesOf("kept"); !slices.Contains(s, "gojinn_invocations_total") || !slices.Contains(s, "gojinn_function_duration_seconds") {
		t.Fatalf("series of kept after removing gone: %v", s)
	}
}

// With edge.shutdown_delay, a node told to stop first says not ready on
// /readyz while its edge keeps answering, for the delay, then stops.
func TestShutdownDelayKeepsServingWhileNotReady(t *testing.T) {
	p := writeNodeConfig(t, t.TempDir(), "shutdown_delay = \"2s\"\n", "")
	n := &devNode{t: t, plainClient: &http.Client{Timeout: 10 * time.Second}}
	n.launch([]string{"agent", "--config", p}, func(string) string { return "" })
	if n.admin == "" || n.http == "" {
		n.cancel()
		t.Fatalf("incomplete banner (admin %q http %q)\nstderr: %s", n.admin, n.http, n.stderr.String())
	}
	readyz := func() int {
		resp, err := n.plainClient.Get("http://" + n.admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for readyz() != 200 {
		if time.Now().After(deadline) {
			n.cancel()
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopAt := time.Now()
	n.cancel()
	deadline = time.Now().Add(time.Second)
	for readyz() != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not turn 503 within 1 s of the stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The edge still answers (no function: 404 from the edge itself).
	if code, _, _ := n.get(n.plainClient, "http://"+n.http+"/x"); code != http.StatusNotFound {
		t.Fatalf("edge during the shutdown delay: %d, want 404 from a serving edge", code)
	}
	select {
	case code := <-n.done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if took := time.Since(stopAt); took < 2*time.Second {
			t.Fatalf("stopped %v after the signal, before the 2 s delay", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30 s")
	}
}

// fileSize is the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A node outside cluster mode lists itself in members with its node_name
// and Raft address, as a cluster member does.
func TestStandaloneMembers(t *testing.T) {
	n := startDev(t, filepath.Join(t.TempDir(), "data"), "")
	var list []cluster.MemberInfo
	if err := json.Unmarshal([]byte(n.cli(0, "members", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if len(list) != 1 {
		t.Fatalf("members: %+v", list)
	}
	m := list[0]
	if m.NodeName != host || m.RaftAddr == "" || m.Role != "leader" || m.Status != "alive" || m.Version != version {
		t.Fatalf("member %+v, want node_name %q, a Raft address, leader, alive, version %q", m, host, version)
	}
	if table := n.cli(0, "members"); !strings.Contains(table, host) || !strings.Contains(table, m.RaftAddr) {
		t.Fatalf("members table lacks the node name or Raft address:\n%s", table)
	}
}

// A request still running when edge.shutdown_grace ends is answered 503
// (the node stopped its function call), not cut off with its connection
// and logged as the client's doing (499).
func TestShutdownGraceEndAnswers503(t *testing.T) {
	dir := t.TempDir()
	sleeper := writeModule(t, dir, "sleep.wasm", runtimetest.WAT(t, "runtime/testdata/wat/sleep-answer.wat"))
	p := writeNodeConfig(t, dir, "shutdown_grace = \"300ms\"\naccess_log = true\n", "")
	n := &devNode{t: t, plainClient: &http.Client{Timeout: 30 * time.Second}}
	n.launch([]string{"agent", "--config", p}, func(string) string { return "" })
	if n.admin == "" || n.http == "" || n.token == "" {
		n.cancel()
		t.Fatalf("incomplete banner (admin %q http %q)\nstderr: %s", n.admin, n.http, n.stderr.String())
	}
	n.cli(0, "deploy", "sleeper", sleeper, "--route", "/sleep", "--timeout", "60s")

	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := n.plainClient.Get("http://" + n.http + "/sleep")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b), err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(n.stderr.String(), `"running"`) {
		if time.Now().After(deadline) {
			n.cancel()
			t.Fatalf("the guest never started\nstderr: %s", n.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.cancel()
	select {
	case r := <-got:
		if r.err != nil || r.code != http.StatusServiceUnavailable {
			t.Fatalf("request running at shutdown: %d %q %v, want a 503", r.code, r.body, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer 20 s after the stop (grace 300ms)")
	}
	select {
	case code := <-n.done:
		if code != 0 {
			t.Fatalf("exit %d\nstderr: %s", code, n.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30 s")
	}
	var access, failed map[string]any
	for _, line := range strings.Split(n.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch {
		case rec["msg"] == "request" && rec["path"] == "/sleep":
			access = rec
		case rec["msg"] == "invocation failed" && rec["function"] == "sleeper":
			failed = rec
		}
	}
	if access == nil || access["status"] != 503.0 {
		t.Errorf("access log line: %v, want status 503", access)
	}
	if failed == nil || !strings.Contains(fmt.Sprint(failed["err"]), "engine closed") {
		t.Errorf("failure line: %v, want the engine closed named", failed)
	}
}
