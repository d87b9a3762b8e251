package cluster

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkSecretFile fails unless path exists with mode 0600.
func checkSecretFile(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTokenCreateAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created on demand
	token, hash, created, err := LoadOrCreateToken(dir, false)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "gjn_"))
	if !strings.HasPrefix(token, "gjn_") || err != nil || len(raw) != 32 {
		t.Fatalf("token %q: want gjn_ + base64url of 32 bytes (%v)", token, err)
	}
	if hash != HashToken(token) {
		t.Fatalf("hash does not match the token")
	}
	if got := checkSecretFile(t, filepath.Join(dir, TokenHashFile)); got != hex.EncodeToString(hash[:]) {
		t.Fatalf("hash file holds %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, TokenFile)); !os.IsNotExist(err) {
		t.Fatalf("the token itself was stored without reveal: %v", err)
	}
	// Until a start has shown it, the token waits in a 0600 file and
	// the next start returns it again.
	if got := checkSecretFile(t, filepath.Join(dir, tokenUnshownFile)); got != token {
		t.Fatalf("unshown file holds %q, want the token", got)
	}
	tok2, hash2, created2, err := LoadOrCreateToken(dir, false)
	if err != nil || !created2 || tok2 != token || hash2 != hash {
		t.Fatalf("start after one that did not show the token: token=%q created=%v err=%v, same hash=%v", tok2, created2, err, hash2 == hash)
	}
	if err := MarkSecretsShown(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, tokenUnshownFile)); !os.IsNotExist(err) {
		t.Fatalf("the unshown copy survived MarkSecretsShown: %v", err)
	}
	tok2, hash2, created2, err = LoadOrCreateToken(dir, false)
	if err != nil || created2 || tok2 != "" || hash2 != hash {
		t.Fatalf("start after the token was shown: token=%q created=%v err=%v, same hash=%v", tok2, created2, err, hash2 == hash)
	}
	// An unshown copy that matches no stored hash (left over from a
	// token since replaced) is ignored and removed.
	if err := writeSecretFile(filepath.Join(dir, tokenUnshownFile), []byte("gjn_stale\n")); err != nil {
		t.Fatal(err)
	}
	if tok3, _, created3, err := LoadOrCreateToken(dir, false); err != nil || created3 || tok3 != "" {
		t.Fatalf("stale unshown copy: token=%q created=%v err=%v", tok3, created3, err)
	}
	if _, err := os.Stat(filepath.Join(dir, tokenUnshownFile)); !os.IsNotExist(err) {
		t.Fatalf("the stale unshown copy was kept: %v", err)
	}
	other, _, _, err := LoadOrCreateToken(t.TempDir(), false)
	if err != nil || other == token {
		t.Fatalf("two data dirs share a token (%v)", err)
	}
}

func TestTokenReveal(t *testing.T) {
	dir := t.TempDir()
	token, hash, created, err := LoadOrCreateToken(dir, true)
	if err != nil || !created || token == "" {
		t.Fatalf("first start: %q created=%v err=%v", token, created, err)
	}
	if got := checkSecretFile(t, filepath.Join(dir, TokenFile)); got != token {
		t.Fatalf("token file holds %q, want %q", got, token)
	}
	checkSecretFile(t, filepath.Join(dir, TokenHashFile))
	for range 2 {
		tok, h, created, err := LoadOrCreateToken(dir, true)
		if err != nil || created || tok != token || h != hash {
			t.Fatalf("restart: %q created=%v err=%v", tok, created, err)
		}
	}
	// Production start over a dev data dir: the hash still works.
	if tok, h, _, err := LoadOrCreateToken(dir, false); err != nil || tok != "" || h != hash {
		t.Fatalf("start without reveal: %q %v", tok, err)
	}
	// A lost hash file is rebuilt from the token.
	os.Remove(filepath.Join(dir, TokenHashFile))
	if tok, h, created, err := LoadOrCreateToken(dir, true); err != nil || created || tok != token || h != hash {
		t.Fatalf("rebuild the hash: %q created=%v err=%v", tok, created, err)
	}
	checkSecretFile(t, filepath.Join(dir, TokenHashFile))
}

func TestTokenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := LoadOrCreateToken(dir, false); err != nil {
		t.Fatal(err)
	}
	// Created without reveal: it cannot be shown later.
	_, _, _, err := LoadOrCreateToken(dir, true)
	if err == nil || !strings.Contains(err.Error(), "delete") {
		t.Fatalf("reveal of a hidden token: %v", err)
	}
	// A token file that does not match the hash.
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte("gjn_other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LoadOrCreateToken(dir, true); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched token file: %v", err)
	}
	// A corrupt hash file is reported, not replaced.
	hashPath := filepath.Join(dir, TokenHashFile)
	if err := os.WriteFile(hashPath, []byte("zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LoadOrCreateToken(dir, false); err == nil || !strings.Contains(err.Error(), "not a hex sha256") {
		t.Fatalf("corrupt hash file: %v", err)
	}
	if b, _ := os.ReadFile(hashPath); string(b) != "zz\n" {
		t.Fatalf("the corrupt hash file was overwritten: %q", b)
	}
}

func TestHashToken(t *testing.T) {
	want := sha256.Sum256([]byte("gjn_abc"))
	if HashToken("gjn_abc") != want {
		t.Fatal("HashToken is not sha256")
	}
	if HashToken("gjn_abc") == HashToken("gjn_abd") {
		t.Fatal("different tokens hash alike")
	}
}

// TestTokenServesAPI checks the pieces fit: a created token opens the API.
func TestTokenServesAPI(t *testing.T) {
	token, hash, _, err := LoadOrCreateToken(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, func(c *APIConfig) { c.TokenHash = hash })
	if _, err := NewClient(h.srv.URL, token, h.srv.Client()).Status(t.Context()); err != nil {
		t.Fatalf("Status with the created token: %v", err)
	}
}
