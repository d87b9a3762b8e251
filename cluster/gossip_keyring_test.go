package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// The keyring is GossipKey then GossipKeys, primary first; a bad or
// repeated key is refused by its position, and no error holds a key.
func TestParseGossipKeyring(t *testing.T) {
	a, b, c := mustGossipKey(t), mustGossipKey(t), mustGossipKey(t)
	enc := base64.StdEncoding.EncodeToString
	ring, err := ParseGossipKeyring(enc(a), []string{enc(b), enc(c)})
	if err != nil || len(ring) != 3 || !bytes.Equal(ring[0], a) || !bytes.Equal(ring[1], b) || !bytes.Equal(ring[2], c) {
		t.Fatalf("primary and two more: %d keys, %v", len(ring), err)
	}
	ring, err = ParseGossipKeyring("", []string{enc(b), enc(a)})
	if err != nil || len(ring) != 2 || !bytes.Equal(ring[0], b) {
		t.Fatalf("gossip_keys alone: the first is the primary: %v", err)
	}
	if ring, err := ParseGossipKeyring("", nil); ring != nil || err != nil {
		t.Fatalf("no keys: %v %v", ring, err)
	}
	for _, tc := range []struct {
		primary string
		more    []string
		want    string
	}{
		{enc(a), []string{enc(a)}, "gossip_keys[0] is the same key as gossip_key"},
		{"", []string{enc(a), enc(b), enc(b)}, "gossip_keys[2] is the same key as gossip_keys[1]"},
		{enc(a), []string{enc(b), "%%%" + enc(c)}, "gossip_keys[1]: gossip key is not valid base64"},
		{enc(a[:15]), nil, "gossip_key: gossip key is 15 bytes"},
		{" ", nil, "gossip_key: gossip key is empty"},
	} {
		_, err := ParseGossipKeyring(tc.primary, tc.more)
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want ErrInvalid saying %q", err, tc.want)
			continue
		}
		for _, k := range [][]byte{a, b, c} {
			if strings.Contains(err.Error(), enc(k)) || strings.Contains(err.Error(), enc(k[:15])[:16]) {
				t.Errorf("the error echoes a key: %v", err)
			}
		}
	}
}

// DATA/cluster/gossip.key holds one key per line, primary first, 0600;
// a file of one key (as written before keyrings) still reads; an empty
// file or a bad line is an error naming the line, never the key.
func TestGossipKeyringFile(t *testing.T) {
	dir := t.TempDir()
	a, b := mustGossipKey(t), mustGossipKey(t)
	if err := writeGossipKeyring(dir, [][]byte{a, b}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, gossipKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	ring, err := readGossipKeyring(dir)
	if err != nil || len(ring) != 2 || !bytes.Equal(ring[0], a) || !bytes.Equal(ring[1], b) {
		t.Fatalf("read back: %d keys, %v", len(ring), err)
	}
	if k, err := readGossipKey(dir); err != nil || !bytes.Equal(k, a) {
		t.Fatalf("primary: %v", err)
	}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(base64.StdEncoding.EncodeToString(b) + "\n")
	if ring, err := readGossipKeyring(dir); err != nil || len(ring) != 1 || !bytes.Equal(ring[0], b) {
		t.Fatalf("one-key file: %d keys, %v", len(ring), err)
	}
	write("\n \n")
	if _, err := readGossipKeyring(dir); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	secret := base64.StdEncoding.EncodeToString(a[:20])
	write(base64.StdEncoding.EncodeToString(b) + "\n" + secret + "\n")
	if _, err := readGossipKeyring(dir); err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad second line: %v", err)
	}
	if ring, err := readGossipKeyring(t.TempDir()); ring != nil || err != nil {
		t.Fatalf("no file: %v %v", ring, err)
	}
}

// MembershipConfig.SecretKeys need SecretKey and must be valid and
// distinct; a node with [a, b] and one with [b, a] read each other, and
// the keyring lists the primary first.
func TestMembershipSecretKeys(t *testing.T) {
	a, b := mustGossipKey(t), mustGossipKey(t)
	for _, tc := range []struct {
		primary []byte
		more    [][]byte
		want    string
	}{
		{nil, [][]byte{a}, "SecretKeys needs SecretKey"},
		{a, [][]byte{b, a[:7]}, "SecretKeys[1]: gossip key is 7 bytes"},
		{a, [][]byte{a}, "SecretKeys[0] is SecretKey again"},
		{a, [][]byte{b, b}, "SecretKeys[1] is SecretKeys[0] again"},
	} {
		cfg := testMembershipConfig(t, "n1")
		cfg.SecretKey, cfg.SecretKeys = tc.primary, tc.more
		if err := cfg.Validate(); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	c1 := testMembershipConfig(t, "n1")
	c1.SecretKey, c1.SecretKeys = a, [][]byte{b}
	n1 := startGossipNode(t, c1)
	c2 := testMembershipConfig(t, "n2")
	c2.SecretKey, c2.SecretKeys = b, [][]byte{a}
	c2.Join = []string{n1.LocalAddr()}
	n2 := startGossipNode(t, c2)
	pollGossip(t, 10*time.Second, "n1 and n2 alive on both", expectGossipAlive([]*Membership{n1, n2}, "n1", "n2"))
	if got, want := n1.KeyFingerprints(), []string{keyFingerprint(a), keyFingerprint(b)}; !slices.Equal(got, want) {
		t.Fatalf("n1 keyring %v, want %v", got, want)
	}
	if got, want := n2.KeyFingerprints(), []string{keyFingerprint(b), keyFingerprint(a)}; !slices.Equal(got, want) {
		t.Fatalf("n2 keyring %v, want %v", got, want)
	}
}
