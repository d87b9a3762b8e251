package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gojinn/gojinn/storage"
)

// GossipKeySize is the size of keys GenerateGossipKey makes: 32 bytes
// selects AES-256-GCM in memberlist.
const GossipKeySize = 32

// GenerateGossipKey returns a new random gossip encryption key as standard
// base64 of GossipKeySize bytes: the output of `gojinn-node keygen`, and
// the form ParseGossipKey reads.
func GenerateGossipKey() (string, error) {
	var k [GossipKeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("gossip keygen: read random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k[:]), nil
}

// ParseGossipKey decodes a base64 gossip key (standard or URL alphabet,
// padded or not, surrounding white space ignored) and checks that it is
// 16, 24 or 32 bytes (AES-128, -192 or -256). Errors wrap
// storage.ErrInvalid and never echo the key.
func ParseGossipKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("gossip key is empty; create one with `gojinn-node keygen`: %w", storage.ErrInvalid)
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("gossip key is not valid base64 (%d characters); use the exact output of `gojinn-node keygen`: %w", len(s), storage.ErrInvalid)
	}
	if err := validateGossipKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// validateGossipKey checks a raw key's length.
func validateGossipKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip key is %d bytes; it must be 16, 24 or 32 bytes (AES-128/192/256), e.g. from `gojinn-node keygen`: %w", len(key), storage.ErrInvalid)
}

// keyFingerprint names a key in logs and status output without revealing
// it: the first 8 bytes of its sha256, in hex.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}
