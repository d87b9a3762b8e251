package pebbletest

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"
)

// TestPebbleDirectory proves the WFE answers over HTTPS trusted by TLSRoots and
// that the issuing root is a CA.
func TestPebbleDirectory(t *testing.T) {
	p := New(t, 5002, 5001)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.TLSRoots}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"newNonce", "newAccount", "newOrder"} {
		if _, ok := dir[k].(string); !ok {
			t.Errorf("directory has no %s: %v", k, dir)
		}
	}
	if root := p.IssuerRoot(); !root.IsCA {
		t.Errorf("issuer root %s is not a CA", root.Subject)
	}
}
