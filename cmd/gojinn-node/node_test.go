package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// On-demand TLS only orders certificates for hosts a route names: exact
// hosts, and subdomains of wildcard hosts only with
// tls.on_demand_wildcards, never for any-host routes.
func TestHostAllowed(t *testing.T) {
	table, err := edge.NewRouteTable([]edge.Route{
		{Host: "api.example.com", Path: "/*", Function: "a"},
		{Host: "*.apps.example.net", Path: "/*", Function: "b"},
		{Path: "/*", Function: "c"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{router: &edge.Router{}}
	n.router.Swap(table)
	for host, want := range map[string]bool{
		"api.example.com":    true,
		"x.apps.example.net": false, // no wildcards without the opt-in
	} {
		if got := n.hostAllowed(host); got != want {
			t.Errorf("without on_demand_wildcards: hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	n.cfg.TLS.OnDemandWildcards = true
	for host, want := range map[string]bool{
		"api.example.com":      true,
		"API.Example.com.":     true,
		"x.apps.example.net":   true,
		"a.b.apps.example.net": true,
		"apps.example.net":     false,
		"evil.com":             false,
		"example.com":          false,
		"xapps.example.net":    false,
	} {
		if got := n.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// A plain-HTTP admin listener reachable beyond loopback and private
// networks is warned about at start (the docs say keep it private).
func TestAdminExposure(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9090":   "",
		"[::1]:9090":       "",
		"10.1.2.3:9090":    "",
		"192.168.0.9:9090": "",
		"[fd00::1]:9090":   "",
		"0.0.0.0:9090":     "every interface",
		"[::]:9090":        "every interface",
		"203.0.113.7:9090": "a public address",
		"[2001:db8::1]:80": "a public address",
	} {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := adminExposure(ta); got != want {
			t.Errorf("adminExposure(%s) = %q, want %q", addr, got, want)
		}
	}
	// Through a real start: the warning is logged once, naming the key.
	cfg := DevConfig()
	cfg.DataDir = t.TempDir()
	cfg.Edge.HTTP, cfg.Edge.HTTPS, cfg.Admin.Listen = "127.0.0.1:0", "", "0.0.0.0:0"
	var logs lockedBuffer
	n, err := startNode(t.Context(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer n.stop(context.Background())
	if got := strings.Count(logs.String(), "the admin API serves plain HTTP on every interface"); got != 1 || !strings.Contains(logs.String(), "admin.listen") {
		t.Fatalf("%d warnings in the start's log, want 1 naming admin.listen:\n%s", got, logs.String())
	}
}

// A start whose functions take longer than startLoadWait to load (a cold
// compilation cache: every module compiled afresh) opens its listeners
// anyway: /healthz answers at once, /readyz says it is loading, and the
// function serves once compiled. Before, a node with many Go modules
// stayed unreachable, /healthz included, until every one had compiled
// (a minute for 16 modules on a slow host), and a liveness probe would
// kill it.
func TestStartOpensListenersWhileCompiling(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hello example; make test runs it")
	}
	dir := t.TempDir()
	mod := filepath.Join(t.TempDir(), "hello.pooled.wasm")
	if err := os.WriteFile(mod, runtimetest.BuildGo(t, "examples/hello", true), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DevConfig()
	cfg.DataDir = dir
	cfg.Edge.HTTP, cfg.Edge.HTTPS, cfg.Admin.Listen = "127.0.0.1:0", "", "127.0.0.1:0"
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	n, err := startNode(t.Context(), cfg, log, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := deployHello(t.Context(), n, mod); err != nil {
		t.Fatal(err)
	}
	n.stop(context.Background())
	if err := os.RemoveAll(filepath.Join(dir, "compilecache")); err != nil {
		t.Fatal(err)
	}

	old := startLoadWait
	startLoadWait = 50 * time.Millisecond
	defer func() { startLoadWait = old }()
	n, err = startNode(t.Context(), cfg, log, true)
	if err != nil {
		t.Fatal(err)
	}
	defer n.stop(context.Background())
	select {
	case <-n.rec.FirstPass():
		t.Fatal("the module compiled within 50ms: the test did not start while compiling")
	default:
	}
	admin := "http://" + n.adminL.Addr().String()
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(admin + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while compiling: %d", code)
	}
	if code := get(admin + "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while compiling: %d, want 503", code)
	}
	_, _, plain := n.edge.Addrs()
	deadline := time.Now().Add(2 * time.Minute)
	for get("http://"+plain+"/?name=x") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("hello never served after the start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
