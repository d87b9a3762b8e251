package main

import (
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
