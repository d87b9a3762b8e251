package cluster

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// ErrInvalidJoinToken means a join token could not be parsed: it was cut
// short when copied, is not a join token, or comes from a newer version.
var ErrInvalidJoinToken = errors.New("invalid join token")

// ErrJoinRefused means the seed refused a join: the token's secret is
// wrong or was rotated, or the seed would not admit the node.
var ErrJoinRefused = errors.New("join refused")

// ErrJoinRateLimited means the seed saw too many failed joins from this
// address and refuses new attempts for a while.
var ErrJoinRateLimited = errors.New("join rate limited")

// ErrSeedNotTrusted means the node a joiner dialed did not prove it belongs
// to the cluster the join token names: a wrong address, a token of
// another cluster, or someone in between.
var ErrSeedNotTrusted = errors.New("seed is not a node of the token's cluster")

// JoinSecretHashFile is the file under the cluster directory
// (DATA/cluster) holding the hex sha256 of the current join secret (mode
// 0600). Only the hash is stored, as for the admin token.
const JoinSecretHashFile = "join-secret.sha256"

// joinTokenUnshownFile holds the join token a bootstrap created until a
// start shows it (MarkSecretsShown), in DATA/cluster.
const joinTokenUnshownFile = "join-token.unshown"

// joinTokenVersion is the first byte of an encoded token.
const joinTokenVersion = 1

// joinTokenLen is version + CA fingerprint + secret.
const joinTokenLen = 1 + sha256.Size + 32

// JoinToken is what an operator hands to a new node: the sha256 of the
// cluster CA certificate, which the node pins when it dials a seed, and a
// 256-bit secret that proves to the seed that the node may join. The
// secret is unexported and String, GoString and LogValue hide it, so a
// token printed with %v or logged shows no secret; Encode is the only way
// to get it.
type JoinToken struct {
	// CAFingerprint is the sha256 of the cluster CA certificate's DER.
	CAFingerprint [32]byte
	secret        [32]byte
}

// NewJoinToken creates a token for ca with a new random secret, and
// returns the secret's sha256, which is all the seed keeps
// (SaveJoinSecretHash). A new token replaces the old one once its hash is
// saved.
func NewJoinToken(ca *ClusterCA) (JoinToken, [32]byte) {
	t := JoinToken{CAFingerprint: ca.Fingerprint()}
	_, _ = rand.Read(t.secret[:]) // crypto/rand.Read never fails since Go 1.24
	return t, t.SecretHash()
}

// SecretHash returns the sha256 of the token's secret.
func (t JoinToken) SecretHash() [32]byte { return sha256.Sum256(t.secret[:]) }

// Encode returns the token as base64url (no padding) of one version byte,
// the CA fingerprint and the secret: 87 characters, safe in shells and
// URLs. It holds the secret: show it once, to the operator.
func (t JoinToken) Encode() string {
	b := make([]byte, 0, joinTokenLen)
	b = append(b, joinTokenVersion)
	b = append(b, t.CAFingerprint[:]...)
	b = append(b, t.secret[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// String describes the token without its secret.
func (t JoinToken) String() string {
	return "join token for cluster CA sha256:" + hex.EncodeToString(t.CAFingerprint[:8]) + "… (secret hidden)"
}

// GoString hides the secret from %#v too.
func (t JoinToken) GoString() string { return t.String() }

// LogValue hides the secret from slog.
func (t JoinToken) LogValue() slog.Value { return slog.StringValue(t.String()) }

// ParseJoinToken parses a token made by Encode; surrounding white space is
// ignored. Errors wrap ErrInvalidJoinToken and say what is wrong, never
// echoing the token.
func ParseJoinToken(s string) (JoinToken, error) {
	var t JoinToken
	s = strings.TrimSpace(s)
	if s == "" {
		return t, fmt.Errorf("%w: it is empty; pass the token the bootstrap node printed (or create one with the cluster CA)", ErrInvalidJoinToken)
	}
	if strings.HasPrefix(s, tokenPrefix) {
		return t, fmt.Errorf("%w: this is an admin token (it starts with %q), not a join token: pass the join token the bootstrap node printed at its first start (\"cluster join token ...\"; until it was shown, DATA/cluster/join-token.unshown there)", ErrInvalidJoinToken, tokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, fmt.Errorf("%w: it is not base64url (%d characters; a token has %d): check it was copied whole", ErrInvalidJoinToken, len(s), base64.RawURLEncoding.EncodedLen(joinTokenLen))
	}
	// The length first: almost any mistyped or cut token has a first byte
	// other than the version, and only a whole token's first byte can
	// mean a newer format.
	if len(b) != joinTokenLen {
		return t, fmt.Errorf("%w: it decodes to %d bytes, a token has %d (%d characters): check it was copied whole", ErrInvalidJoinToken, len(b), joinTokenLen, base64.RawURLEncoding.EncodedLen(joinTokenLen))
	}
	if b[0] != joinTokenVersion {
		if b[0] > joinTokenVersion && b[0] < joinTokenVersion+8 {
			return t, fmt.Errorf("%w: token version %d is newer than this node understands (%d): upgrade this node", ErrInvalidJoinToken, b[0], joinTokenVersion)
		}
		return t, fmt.Errorf("%w: it does not start like a join token: check it was copied whole", ErrInvalidJoinToken)
	}
	copy(t.CAFingerprint[:], b[1:1+sha256.Size])
	copy(t.secret[:], b[1+sha256.Size:])
	if t.secret == ([32]byte{}) {
		return t, fmt.Errorf("%w: its secret is all zeros, which no seed creates", ErrInvalidJoinToken)
	}
	return t, nil
}

// SaveJoinSecretHash stores the join secret's hash in dir (DATA/cluster),
// replacing the previous one atomically: tokens with another secret stop
// working.
func SaveJoinSecretHash(dir string, hash [32]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("join secret: %w (check the data directory's permissions)", err)
	}
	return writeSecretFile(filepath.Join(dir, JoinSecretHashFile), []byte(hex.EncodeToString(hash[:])+"\n"))
}

// LoadJoinSecretHash reads the join secret's hash from dir. A missing file
// wraps fs.ErrNotExist: this node never created a join token.
func LoadJoinSecretHash(dir string) ([32]byte, error) {
	var hash [32]byte
	path := filepath.Join(dir, JoinSecretHashFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return hash, fmt.Errorf("join secret: %s does not exist: create a join token on this node first: %w", path, err)
	}
	if err != nil {
		return hash, fmt.Errorf("join secret: read: %w", err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(raw) != len(hash) {
		return hash, fmt.Errorf("join secret: %s is not a hex sha256: create a new join token to replace it", path)
	}
	copy(hash[:], raw)
	return hash, nil
}
