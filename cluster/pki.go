package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoClusterCA means a directory holds no cluster CA: this node did not
// bootstrap the cluster (only the bootstrap node, and voters it was copied
// to, hold the CA key).
var ErrNoClusterCA = errors.New("no cluster CA")

// ErrNoNodeIdentity means a directory holds no node certificate yet: the
// node must bootstrap a cluster or join one with a join token first.
var ErrNoNodeIdentity = errors.New("no node identity")

// File names of the cluster's key material. ClusterDir(dataDir) holds the
// node's own files; its "ca" subdirectory holds the CA on nodes that have
// it.
const (
	// ClusterCADirName is the CA directory under the cluster directory.
	ClusterCADirName = "ca"
	// NodeKeyFile is the node's private key (PKCS#8 PEM, mode 0600).
	NodeKeyFile = "node.key"
	// NodeCertFile is the node's certificate signed by the cluster CA.
	NodeCertFile = "node.crt"
	// NodeCAFile is the cluster CA certificate the node trusts, and only it.
	NodeCAFile = "ca.crt"

	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// NodeServerName is the DNS name every node certificate carries and every
// node dials with as the TLS server name. Nodes are reached by addresses
// that change (port 0 in tests, NAT, a new IP after a restart), so the
// identity a client checks is "a node of this cluster", proved by the
// cluster CA's signature, not an address; which node it is comes from
// PeerNodeID. The .internal TLD is reserved for private use and never
// resolves publicly.
const NodeServerName = "node.gojinn.internal"

// nodeURIScheme and nodeURIHost form a node's URI SAN, gojinn://node/<id>.
const (
	nodeURIScheme = "gojinn"
	nodeURIHost   = "node"
)

const (
	// clusterCAValidity: the root outlives any node; replacing it means
	// re-issuing every node certificate.
	clusterCAValidity = 10 * 365 * 24 * time.Hour
	// nodeCertValidity is the life of a node certificate (DESIGN.md,
	// "Security between nodes", says how a node renews).
	nodeCertValidity = 365 * 24 * time.Hour
	// pkiBackdate absorbs clock skew between nodes.
	pkiBackdate = time.Hour
	// maxNodeCertNames bounds the IPs and DNS names a node certificate
	// carries.
	maxNodeCertNames = 32
)

// ClusterDir is the directory of the cluster's key material under a node's
// data directory: DATA/cluster.
func ClusterDir(dataDir string) string { return filepath.Join(dataDir, "cluster") }

// ClusterCA is the cluster's certificate authority: an ECDSA P-256 root,
// created once at bootstrap, that signs node certificates. Every node
// trusts this root and nothing else for node-to-node traffic.
type ClusterCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	now  func() time.Time // tests move the clock
}

// Cert returns the CA certificate.
func (ca *ClusterCA) Cert() *x509.Certificate { return ca.cert }

// Fingerprint returns the sha256 of the CA certificate's DER, which join
// tokens carry to pin the CA.
func (ca *ClusterCA) Fingerprint() [32]byte { return sha256.Sum256(ca.cert.Raw) }

// LoadOrCreateClusterCA loads the CA kept in dir (DATA/cluster/ca), or
// creates it when dir does not exist or is empty. created says which, so
// the caller logs the creation once. A directory holding one file of the
// pair is an error, never silently replaced: nodes already trust the old
// root.
func LoadOrCreateClusterCA(dir string) (ca *ClusterCA, created bool, err error) {
	ca, err = LoadClusterCA(dir)
	if !errors.Is(err, ErrNoClusterCA) {
		return ca, false, err
	}
	ca, err = createClusterCA(dir)
	if errors.Is(err, errPKIDirTaken) {
		// Another process created the CA between our read and our rename.
		ca, err = LoadClusterCA(dir)
		return ca, false, err
	}
	return ca, err == nil, err
}

// LoadClusterCA loads the CA kept in dir. It wraps ErrNoClusterCA when
// neither file exists.
func LoadClusterCA(dir string) (*ClusterCA, error) {
	certPEM, certErr := os.ReadFile(filepath.Join(dir, caCertFile))
	keyPEM, keyErr := os.ReadFile(filepath.Join(dir, caKeyFile))
	switch {
	case certErr == nil && keyErr == nil:
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w in %s: bootstrap the cluster on this node, or copy the CA directory from the node that bootstrapped it", ErrNoClusterCA, dir)
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("cluster CA: read certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("cluster CA: read key: %w", keyErr)
	default:
		return nil, fmt.Errorf("cluster CA in %s is incomplete (one of %s, %s is missing): restore it from a backup; a new CA means re-joining every node",
			dir, caCertFile, caKeyFile)
	}
	if err := checkKeyFileMode(filepath.Join(dir, caKeyFile)); err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA %s: %w (restore it from a backup)", filepath.Join(dir, caCertFile), err)
	}
	key, err := parseECKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA %s: %w (restore it from a backup)", filepath.Join(dir, caKeyFile), err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("cluster CA in %s: the key does not match the certificate (restore both from the same backup)", dir)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("cluster CA %s is not a CA certificate (restore it from a backup)", filepath.Join(dir, caCertFile))
	}
	return &ClusterCA{cert: cert, key: key, now: time.Now}, nil
}

// createClusterCA makes a new root and puts it at dir: both files are
// written and synced in a fresh directory beside it, which is then renamed
// to dir, so a crash or a concurrent start never leaves a torn pair. It
// returns errPKIDirTaken when dir exists and is not empty by then.
func createClusterCA(dir string) (*ClusterCA, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("cluster CA: %w (check the data directory's permissions)", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: generate key: %w", err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		// The key id tells apart the roots of different clusters.
		Subject:               pkix.Name{Organization: []string{"Gojinn"}, CommonName: "Gojinn Cluster CA " + hex.EncodeToString(ski[:4])},
		NotBefore:             now.Add(-pkiBackdate),
		NotAfter:              now.Add(clusterCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs node certificates only, never another CA
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: sign root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".ca-new-*")
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // nothing is left after a successful rename
	if err := pkiWriteNew(filepath.Join(tmp, caKeyFile), keyPEM); err != nil {
		return nil, err
	}
	if err := pkiWriteNew(filepath.Join(tmp, caCertFile), encodeCertPEM(der)); err != nil {
		return nil, err
	}
	// Renaming onto a missing or empty directory succeeds; onto a
	// non-empty one it fails.
	if err := os.Rename(tmp, dir); err != nil {
		if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
			return nil, errPKIDirTaken
		}
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if err := pkiSyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return &ClusterCA{cert: cert, key: key, now: time.Now}, nil
}

// errPKIDirTaken: the CA directory appeared, non-empty, while creating one.
var errPKIDirTaken = errors.New("cluster CA directory already exists")

// IssueNode signs a certificate for node nodeID's public key pub, valid
// for a year as both TLS server and client. The certificate names the node
// in its subject CN and in a URI SAN gojinn://node/<id> (what PeerNodeID
// reads), carries NodeServerName (what nodes verify when they dial) plus
// ips and dns (for tools such as curl), and is returned as DER.
func (ca *ClusterCA) IssueNode(nodeID string, pub crypto.PublicKey, ips []net.IP, dns []string) ([]byte, error) {
	if err := validateNodeID(nodeID); err != nil {
		return nil, fmt.Errorf("cluster CA: issue a node certificate: %w", err)
	}
	if len(ips)+len(dns) > maxNodeCertNames {
		return nil, fmt.Errorf("cluster CA: node %s asks for %d names, at most %d are allowed: %w", nodeID, len(ips)+len(dns), maxNodeCertNames, ErrInvalidIdentity)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("cluster CA: node %s: ECDSA keys must use P-256 or P-384: %w", nodeID, ErrInvalidIdentity)
		}
	default:
		// RSA and Ed25519 would work with TLS 1.3, but one key type keeps
		// the surface small; LoadOrCreateNodeKey makes P-256 keys.
		return nil, fmt.Errorf("cluster CA: node %s: key type %T is not supported, use ECDSA P-256: %w", nodeID, pub, ErrInvalidIdentity)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: node %s: %w", nodeID, err)
	}
	names := []string{NodeServerName}
	for _, d := range dns {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d != "" && d != NodeServerName {
			names = append(names, d)
		}
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"Gojinn"}, CommonName: nodeID},
		NotBefore:    now.Add(-pkiBackdate),
		NotAfter:     now.Add(nodeCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     names,
		IPAddresses:  ips,
		URIs:         []*url.URL{nodeURI(nodeID)},
		SubjectKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: sign the certificate of node %s: %w", nodeID, err)
	}
	return der, nil
}

// nodeURI is node id's URI SAN.
func nodeURI(id string) *url.URL {
	return &url.URL{Scheme: nodeURIScheme, Host: nodeURIHost, Path: "/" + id}
}

// nodeIDFromCert returns the node ID a certificate names: its one
// gojinn://node/<id> URI SAN, which must agree with the subject CN.
func nodeIDFromCert(c *x509.Certificate) (string, error) {
	id := ""
	for _, u := range c.URIs {
		if u.Scheme != nodeURIScheme || u.Host != nodeURIHost {
			continue
		}
		if id != "" {
			return "", fmt.Errorf("certificate %q names more than one node: %w", c.Subject.CommonName, ErrInvalidIdentity)
		}
		id = strings.TrimPrefix(u.Path, "/")
	}
	if id == "" {
		return "", fmt.Errorf("certificate %q is not a gojinn node certificate (no gojinn://node/ URI): %w", c.Subject.CommonName, ErrInvalidIdentity)
	}
	if err := validateNodeID(id); err != nil {
		return "", fmt.Errorf("certificate names node %q: %w", id, ErrInvalidIdentity)
	}
	if c.Subject.CommonName != id {
		return "", fmt.Errorf("certificate CN %q differs from its node URI %q: %w", c.Subject.CommonName, id, ErrInvalidIdentity)
	}
	return id, nil
}

// subjectKeyID is the first 20 bytes of the sha256 of the public key.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

// randomSerial is a random positive 127-bit serial number.
func randomSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	b[0] &= 0x7f
	s := new(big.Int).SetBytes(b)
	return s.Add(s, big.NewInt(1)) // never zero
}
