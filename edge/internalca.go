package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrNoCARoot is returned by ExportCARoot when the data directory holds no
// internal CA yet.
var ErrNoCARoot = errors.New("no internal CA root")

const (
	// caRootValidity is how long the internal root is valid: long enough
	// that nobody has to re-distribute it in the life of a node.
	caRootValidity = 10 * 365 * 24 * time.Hour
	// caLeafValidity is the validity of leaves signed by the internal CA.
	caLeafValidity = 30 * 24 * time.Hour
	// caLeafRenewBefore: a leaf with less than this left is re-signed on
	// the next handshake that asks for it.
	caLeafRenewBefore = 10 * 24 * time.Hour
	// caBackdate absorbs clock skew between the node and its clients.
	caBackdate = time.Hour
	// caMaxDynamicLeaves bounds the leaves cached for allowed SNI names
	// beyond the configured ones.
	caMaxDynamicLeaves = 4096

	caRootCertFile = "root.crt"
	caRootKeyFile  = "root.key"
)

// caDir is where the internal CA lives under a data directory.
func caDir(dataDir string) string { return filepath.Join(dataDir, "tls", "ca") }

// ExportCARoot returns the PEM of the internal CA's root certificate kept
// under dataDir, for clients that must trust the node (`gojinn-node ca
// export`). It wraps ErrNoCARoot when no CA has been created yet.
func ExportCARoot(dataDir string) ([]byte, error) {
	path := filepath.Join(caDir(dataDir), caRootCertFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w under %s: start the node once with tls mode internal to create it", ErrNoCARoot, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading internal CA root: %w", err)
	}
	if _, err := parseCertPEM(data); err != nil {
		return nil, fmt.Errorf("internal CA root %s: %w", path, err)
	}
	return data, nil
}

// internalCA is a local certificate authority: a root kept on disk that
// signs short-lived leaves kept in memory. It serves GetCertificate.
type internalCA struct {
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	names   []string // the default leaf's names: configured + localhost + loopback IPs
	allow   func(host string) bool
	log     *slog.Logger
	now     func() time.Time // tests move the clock

	mu      sync.Mutex
	def     *tls.Certificate            // leaf for names; also served for unknown SNI
	dynamic map[string]*tls.Certificate // leaves for names allow accepted
}

// newInternalCA loads the CA under dataDir or creates it at first use.
func newInternalCA(dataDir string, names []string, allow func(string) bool, log *slog.Logger) (*internalCA, error) {
	root, key, created, err := loadOrCreateCA(caDir(dataDir))
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("tls: created internal CA", "dir", caDir(dataDir), "subject", root.Subject.CommonName,
			"not_after", root.NotAfter)
	}
	ca := &internalCA{
		root:    root,
		rootKey: key,
		names:   defaultLeafNames(names),
		allow:   allow,
		log:     log,
		now:     time.Now,
		dynamic: make(map[string]*tls.Certificate),
	}
	if _, err := ca.defaultLeaf(); err != nil {
		return nil, err
	}
	return ca, nil
}

// defaultLeafNames is names plus localhost and the loopback addresses,
// lowercased and without duplicates.
func defaultLeafNames(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(append([]string(nil), names...), "localhost", "127.0.0.1", "::1") {
		n = tlsNormalizeHost(n)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// tlsNormalizeHost lowercases a host name and drops a trailing dot.
func tlsNormalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// GetCertificate picks the leaf for a handshake: the default leaf when it
// covers the SNI name (or there is none), a leaf for the name when allow
// accepts it, else the default leaf (the client then refuses the name).
func (ca *internalCA) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	def, err := ca.defaultLeaf()
	if err != nil {
		return nil, err
	}
	name := tlsNormalizeHost(hello.ServerName)
	if name == "" || def.Leaf.VerifyHostname(name) == nil || ca.allow == nil || !ca.allow(name) {
		return def, nil
	}
	return ca.dynamicLeaf(name)
}

// defaultLeaf returns the leaf for the configured names, signing a new one
// when there is none or it is near expiry.
func (ca *internalCA) defaultLeaf() (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.fresh(ca.def) {
		return ca.def, nil
	}
	leaf, err := ca.sign(ca.names)
	if err != nil {
		return nil, err
	}
	ca.def = leaf
	return leaf, nil
}

// dynamicLeaf returns the leaf for one allowed name, signing it if needed.
func (ca *internalCA) dynamicLeaf(name string) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.dynamic[name]; ca.fresh(c) {
		return c, nil
	}
	leaf, err := ca.sign([]string{name})
	if err != nil {
		return nil, err
	}
	if len(ca.dynamic) >= caMaxDynamicLeaves {
		for k := range ca.dynamic { // drop an arbitrary entry: it is re-signed on demand
			delete(ca.dynamic, k)
			break
		}
	}
	ca.dynamic[name] = leaf
	return leaf, nil
}

// fresh reports whether c exists and is not near expiry. Callers hold mu.
func (ca *internalCA) fresh(c *tls.Certificate) bool {
	return c != nil && ca.now().Add(caLeafRenewBefore).Before(c.Leaf.NotAfter)
}

// sign issues a leaf for names (DNS names or IP literals) with a new key.
func (ca *internalCA) sign(names []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("internal CA: leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-caBackdate),
		NotAfter:     now.Add(caLeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		return nil, fmt.Errorf("internal CA: signing leaf for %v: %w", names, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("internal CA: parsing new leaf: %w", err)
	}
	ca.log.Debug("tls: internal CA signed a leaf", "names", names, "not_after", leaf.NotAfter)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CheckInternalCA reads the internal CA kept under dataDir as the edge
// will, so that a damaged or half-present one stops a node before it
// starts anything, with the same message. No CA yet is fine: the edge
// creates one at start.
func CheckInternalCA(dataDir string) error {
	dir := caDir(dataDir)
	_, certErr := os.Stat(filepath.Join(dir, caRootCertFile))
	_, keyErr := os.Stat(filepath.Join(dir, caRootKeyFile))
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return nil
	}
	_, _, _, err := loadOrCreateCA(dir) // both or one exist: it only reads
	return err
}

// loadOrCreateCA reads the root pair under dir, or creates it when neither
// file exists. A half-present pair is an error rather than silently
// replaced, since clients may already trust the old root.
func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	certPEM, certErr := os.ReadFile(filepath.Join(dir, caRootCertFile))
	keyPEM, keyErr := os.ReadFile(filepath.Join(dir, caRootKeyFile))
	switch {
	case certErr == nil && keyErr == nil:
		root, key, err := parseCAPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, false, fmt.Errorf("internal CA in %s: %w", dir, err)
		}
		return root, key, false, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		root, key, err := createCA(dir)
		if errors.Is(err, errCADirTaken) {
			// Another process made the CA between our read and our rename:
			// use theirs. If the directory holds something else, say so.
			certPEM, certErr = os.ReadFile(filepath.Join(dir, caRootCertFile))
			keyPEM, keyErr = os.ReadFile(filepath.Join(dir, caRootKeyFile))
			if certErr != nil || keyErr != nil {
				return nil, nil, false, fmt.Errorf("internal CA: %s exists but does not hold both %s and %s: move it away",
					dir, caRootCertFile, caRootKeyFile)
			}
			root, key, err := parseCAPair(certPEM, keyPEM)
			if err != nil {
				return nil, nil, false, fmt.Errorf("internal CA in %s: %w", dir, err)
			}
			return root, key, false, nil
		}
		return root, key, err == nil, err
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("internal CA: reading root: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("internal CA: reading root key: %w", keyErr)
	default:
		return nil, nil, false, fmt.Errorf("internal CA in %s is incomplete (one of %s, %s is missing): restore it, or delete the directory to create a new CA that clients must trust again",
			dir, caRootCertFile, caRootKeyFile)
	}
}

// errCADirTaken: the CA directory appeared, non-empty, while creating one.
var errCADirTaken = errors.New("internal CA directory already exists")

func parseCAPair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	root, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("root certificate: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("root key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("root key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("root key: %T, want ECDSA", k)
	}
	if !key.PublicKey.Equal(root.PublicKey) {
		return nil, nil, errors.New("root key does not match the root certificate")
	}
	if !root.IsCA {
		return nil, nil, errors.New("root certificate is not a CA")
	}
	return root, key, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// createCA makes a new root and puts it at dir: both files are written
// (key 0600) and synced in a fresh directory beside it, which is then
// renamed to dir, so a crash or a concurrent start never leaves a torn or
// mismatched pair. It returns errCADirTaken when dir exists and is not
// empty by then.
func createCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}
	ski := sha256.Sum256(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The key id in the name tells apart the roots of different nodes.
		Subject:               pkix.Name{Organization: []string{"Gojinn"}, CommonName: fmt.Sprintf("Gojinn Local CA %x", ski[:4])},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(caRootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: signing root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}

	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".ca-new-*")
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // nothing left after a successful rename
	if err := writeSynced(filepath.Join(tmp, caRootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeSynced(filepath.Join(tmp, caRootCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	// Renaming onto an empty directory succeeds; onto a non-empty one fails.
	if err := os.Rename(tmp, dir); err != nil {
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return nil, nil, errCADirTaken
		}
		return nil, nil, fmt.Errorf("internal CA: %w", err)
	}
	return root, key, nil
}

// writeSynced creates path (which must not exist) with perm and data.
func writeSynced(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("internal CA: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("internal CA: writing %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("internal CA: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}
