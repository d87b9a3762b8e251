package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/edge"
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
