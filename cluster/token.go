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
	"os"
	"path/filepath"
	"strings"
)

// Admin token files in the data directory.
const (
	// TokenHashFile holds the hex sha256 of the admin token: all a node
	// needs to check requests.
	TokenHashFile = "admin-token.sha256"
	// TokenFile holds the token itself, only in reveal (dev) mode.
	TokenFile = "admin-token"
	// tokenUnshownFile holds a new admin token until a start shows it
	// (see MarkSecretsShown).
	tokenUnshownFile = "admin-token.unshown"
	// tokenPrefix marks Gojinn admin tokens, so secret scanners and people
	// can tell them apart.
	tokenPrefix = "gjn_"
)

// HashToken returns the sha256 of an admin token, as APIConfig.TokenHash
// wants it.
func HashToken(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}

// LoadOrCreateToken loads the admin token's hash from dataDir, creating a
// token at the first start: 32 random bytes as "gjn_" + base64url. Only the
// hash is kept for good (DATA/admin-token.sha256, mode 0600), so token is
// returned only when created is true: print it, then call
// MarkSecretsShown. Until then the new token also waits in
// DATA/admin-token.unshown (0600), and a start that fails before showing
// it returns it again at the next start, created still true, instead of
// losing it. In reveal (dev) mode the token is also stored in
// DATA/admin-token (0600) and returned on every start; a token created
// without reveal cannot be revealed later, which is an error that says how
// to rotate it.
func LoadOrCreateToken(dataDir string, reveal bool) (token string, hash [32]byte, created bool, err error) {
	hashPath := filepath.Join(dataDir, TokenHashFile)
	tokenPath := filepath.Join(dataDir, TokenFile)
	unshownPath := filepath.Join(dataDir, tokenUnshownFile)
	hash, hashErr := readTokenHash(hashPath)
	if hashErr != nil && !errors.Is(hashErr, fs.ErrNotExist) {
		return "", hash, false, hashErr
	}
	haveHash := hashErr == nil
	if haveHash && !reveal {
		if tok, ok := readUnshown(unshownPath, func(t string) bool { return HashToken(t) == hash }); ok {
			return tok, hash, true, nil
		}
	}
	if reveal {
		tok, err := os.ReadFile(tokenPath)
		switch {
		case err == nil:
			token = strings.TrimSpace(string(tok))
			sum := HashToken(token)
			if haveHash && sum != hash {
				return "", hash, false, fmt.Errorf("cluster: %s does not match %s; delete both to create a new admin token", tokenPath, hashPath)
			}
			if !haveHash {
				// A crash between writing the token and its hash.
				if err := writeSecretFile(hashPath, []byte(hex.EncodeToString(sum[:])+"\n")); err != nil {
					return "", hash, false, err
				}
			}
			return token, sum, false, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", hash, false, fmt.Errorf("cluster: read admin token: %w", err)
		case haveHash:
			return "", hash, false, fmt.Errorf("cluster: the admin token was created without reveal mode, so only its hash is stored in %s; use the token printed at the first start, or delete %s to create a new one", hashPath, hashPath)
		}
	}
	if haveHash {
		return "", hash, false, nil
	}
	token, err = newToken()
	if err != nil {
		return "", hash, false, err
	}
	hash = HashToken(token)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", hash, false, fmt.Errorf("cluster: create data dir: %w", err)
	}
	// The token first: if the hash write is lost, the next start
	// rebuilds it from the token (reveal) or creates another one (the
	// unshown copy matches no hash).
	keep := unshownPath
	if reveal {
		keep = tokenPath
	}
	if err := writeSecretFile(keep, []byte(token+"\n")); err != nil {
		return "", hash, false, err
	}
	if err := writeSecretFile(hashPath, []byte(hex.EncodeToString(hash[:])+"\n")); err != nil {
		return "", hash, false, err
	}
	return token, hash, true, nil
}

// A secret that a start creates and must show the operator once (the
// admin token; the join token of a node that bootstraps a cluster) is shown
// by the banner at the end of a start that succeeded. Until then it waits
// in an ".unshown" file (0600) next to its hash, so a start that fails
// after creating it (a port taken, a TLS setting refused) shows it at the
// next start instead of losing it for good. MarkSecretsShown removes
// those files once the banner has shown the secrets.

// readUnshown returns the secret in the unshown file at path if there is
// one and match accepts it (it is the secret whose hash is stored). A
// file that does not match is stale (its hash was replaced) and removed.
func readUnshown(path string, match func(string) bool) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || !match(tok) {
		_ = os.Remove(path)
		return "", false
	}
	return tok, true
}

// MarkSecretsShown removes the unshown copies of the admin token and of
// the join token in dataDir, once a start has shown them to the operator:
// from then on only their hashes remain. Missing files are fine.
func MarkSecretsShown(dataDir string) error {
	var errs []error
	for _, p := range []string{
		filepath.Join(dataDir, tokenUnshownFile),
		filepath.Join(ClusterDir(dataDir), joinTokenUnshownFile),
	} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cluster: remove the shown secret's copy: %w", err))
		}
	}
	return errors.Join(errs...)
}

// newToken returns a fresh admin token.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster: generate admin token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// readTokenHash reads a hex sha256 file.
func readTokenHash(path string) ([32]byte, error) {
	var hash [32]byte
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return hash, err
		}
		return hash, fmt.Errorf("cluster: read admin token hash: %w", err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(raw) != len(hash) {
		return hash, fmt.Errorf("cluster: %s is not a hex sha256; delete it to create a new admin token", path)
	}
	copy(hash[:], raw)
	return hash, nil
}

// writeSecretFile writes data to path with mode 0600, atomically: a temp
// file, fsync, rename.
func writeSecretFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o600)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			werr = errors.Join(werr, rerr)
		}
		return fmt.Errorf("cluster: write %s: %w", path, werr)
	}
	return nil
}
