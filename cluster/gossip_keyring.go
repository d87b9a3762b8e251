package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gojinn/gojinn/storage"
)

// A node's gossip keyring: the keys memberlist decrypts with, the first of
// which (the primary) it encrypts with. It comes from the configuration
// (cluster.gossip_key, then cluster.gossip_keys) or, when neither is set,
// from DATA/cluster/gossip.key, which holds one base64 key per line,
// primary first: written at bootstrap (one key) and at enrollment (the
// seed's whole keyring). Rolling restarts through three keyrings rotate a
// key without a moment in which two running nodes cannot read each other:
// [old, new], then [new, old], then [new] (docs/operations.md).

// gossipKeyFile holds the keyring (base64, one key per line, 0600).
const gossipKeyFile = "gossip.key"

// ParseGossipKeyring parses a keyring given as a primary key and further
// keys, as AgentConfig.GossipKey and GossipKeys (or cluster.gossip_key and
// cluster.gossip_keys) are: the keyring is primary (when not empty)
// followed by more, and its first key is the one gossip encrypts with.
// Every key must parse (ParseGossipKey) and appear once. Errors wrap
// storage.ErrInvalid, say which key by its position ("gossip_keys[1]")
// and never echo key material. Both empty: nil, nil.
func ParseGossipKeyring(primary string, more []string) ([][]byte, error) {
	var keys []namedKey
	if primary != "" {
		keys = append(keys, namedKey{"gossip_key", primary})
	}
	for i, s := range more {
		keys = append(keys, namedKey{fmt.Sprintf("gossip_keys[%d]", i), s})
	}
	return parseKeyring(keys)
}

// namedKey is one base64 key and how to name it in an error.
type namedKey struct{ name, s string }

// parseKeyring parses keys in order, refusing bad and repeated ones.
func parseKeyring(keys []namedKey) ([][]byte, error) {
	var ring [][]byte
	for _, e := range keys {
		k, err := ParseGossipKey(e.s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		for j, prev := range ring {
			if bytes.Equal(prev, k) {
				return nil, fmt.Errorf("%s is the same key as %s (fingerprint %s); list every key once, the primary first: %w",
					e.name, keys[j].name, keyFingerprint(k), storage.ErrInvalid)
			}
		}
		ring = append(ring, k)
	}
	return ring, nil
}

// keyringFingerprints names a keyring's keys, primary first, for logs.
func keyringFingerprints(ring [][]byte) []string {
	out := make([]string, len(ring))
	for i, k := range ring {
		out[i] = keyFingerprint(k)
	}
	return out
}

// readGossipKeyring reads the keyring stored in dir (DATA/cluster). A
// missing file is nil, nil: gossip then runs unencrypted, as before a key
// existed.
func readGossipKeyring(dir string) ([][]byte, error) {
	path := filepath.Join(dir, gossipKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	var keys []namedKey
	for i, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keys = append(keys, namedKey{fmt.Sprintf("line %d", i+1), l})
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file %s is empty: copy it from another node of the cluster, or set cluster.gossip_key: %w", path, storage.ErrInvalid)
	}
	ring, err := parseKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	return ring, nil
}

// readGossipKey is the primary key stored in dir, nil when none is.
func readGossipKey(dir string) ([]byte, error) {
	ring, err := readGossipKeyring(dir)
	if err != nil || len(ring) == 0 {
		return nil, err
	}
	return ring[0], nil
}

// writeGossipKeyring stores ring in dir, replacing the file atomically
// (0600).
func writeGossipKeyring(dir string, ring [][]byte) error {
	var b strings.Builder
	for _, k := range ring {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return writeSecretFile(filepath.Join(dir, gossipKeyFile), []byte(b.String()))
}

// primaryKey is the key gossip encrypts with, nil without a keyring.
func primaryKey(ring [][]byte) []byte {
	if len(ring) == 0 {
		return nil
	}
	return ring[0]
}

// secondaryKeys are the keys gossip only decrypts with.
func secondaryKeys(ring [][]byte) [][]byte {
	if len(ring) < 2 {
		return nil
	}
	return ring[1:]
}

// sameKeyring reports whether a and b hold the same keys in the same
// order.
func sameKeyring(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}
