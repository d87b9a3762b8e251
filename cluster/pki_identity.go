package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ErrInvalidIdentity means a certificate or key is not a valid node
// identity of this cluster: not signed by the cluster CA, expired, not
// naming a node, or not matching the node's key.
var ErrInvalidIdentity = errors.New("invalid node identity")

// ErrPeerNotAuthenticated means a connection's peer did not present a
// cluster certificate that the handshake verified.
var ErrPeerNotAuthenticated = errors.New("peer is not an authenticated cluster node")

// NodeIdentity is a node's certificate, key and the cluster CA it trusts:
// everything node-to-node TLS needs. It is immutable; a renewed
// certificate means loading a new NodeIdentity.
type NodeIdentity struct {
	nodeID  string
	cert    *x509.Certificate
	ca      *x509.Certificate
	pool    *x509.CertPool // the cluster CA only
	tlsCert tls.Certificate
}

// NodeID returns the node ID the certificate names.
func (id *NodeIdentity) NodeID() string { return id.nodeID }

// Certificate returns the node's certificate.
func (id *NodeIdentity) Certificate() *x509.Certificate { return id.cert }

// CACert returns the cluster CA certificate.
func (id *NodeIdentity) CACert() *x509.Certificate { return id.ca }

// ServerTLS returns a TLS config for accepting node connections (Raft,
// blob fetch, forwarding): TLS 1.3 only, the client must present a
// certificate signed by the cluster CA (and no other root) that names a
// node. Each call returns a new config the caller may change.
func (id *NodeIdentity) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.tlsCert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        id.pool,
		VerifyConnection: verifyNodePeer,
	}
}

// APIServerTLS returns the TLS config of the cluster API listener, which
// also serves nodes that are joining and have no certificate yet: a
// client certificate is verified against the cluster CA when given, and
// may be absent. Only the join endpoint may serve requests without one;
// wrap every other handler in RequireNode.
func (id *NodeIdentity) APIServerTLS() *tls.Config {
	c := id.ServerTLS()
	c.ClientAuth = tls.VerifyClientCertIfGiven
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // a joining node; RequireNode guards everything else
		}
		return verifyNodePeer(cs)
	}
	return c
}

// ClientTLS returns a TLS config for dialing other nodes: TLS 1.3 only,
// the node's certificate as client certificate, and the server must
// present a certificate signed by the cluster CA (and no other root) for
// NodeServerName that names a node. Each call returns a new config.
func (id *NodeIdentity) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.tlsCert},
		RootCAs:          id.pool,
		ServerName:       NodeServerName,
		VerifyConnection: verifyNodePeer,
	}
}

// verifyNodePeer refuses a handshake whose peer certificate, though signed
// by the cluster CA, does not name a node.
func verifyNodePeer(cs tls.ConnectionState) error {
	_, err := PeerNodeID(cs)
	return err
}

// PeerNodeID returns the node ID of a connection's authenticated peer. It
// trusts the verification the handshake did, so use it only on connections
// set up with a NodeIdentity's TLS configs (which verify against the
// cluster CA only). It wraps ErrPeerNotAuthenticated when the peer
// presented no verified certificate, and ErrInvalidIdentity when the
// certificate does not name a node.
func PeerNodeID(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: it presented no certificate verified against the cluster CA (is it a node of this cluster? join it with a join token)", ErrPeerNotAuthenticated)
	}
	id, err := nodeIDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return "", fmt.Errorf("peer: %w", err)
	}
	return id, nil
}

// RequireNode serves next only to requests over TLS whose client presented
// a verified node certificate (see APIServerTLS), and answers 401
// otherwise.
func RequireNode(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeJoinError(w, apiErrorf(http.StatusUnauthorized, CodeUnauthorized, "this endpoint is for cluster nodes: connect over TLS with a node certificate"))
			return
		}
		if _, err := PeerNodeID(*r.TLS); err != nil {
			writeJoinError(w, apiErrorf(http.StatusUnauthorized, CodeUnauthorized, "this endpoint is for cluster nodes: %v", err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LoadOrCreateNodeKey returns the node's private key kept in dir
// (DATA/cluster/node.key), creating an ECDSA P-256 key (mode 0600) at the
// first call. The key never leaves the node: joining sends a CSR signed
// with it.
func LoadOrCreateNodeKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, NodeKeyFile)
	key, err := loadNodeKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node key: %w (check the data directory's permissions)", err)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node key: generate: %w", err)
	}
	data, err := encodeKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	err = pkiWriteNew(path, data)
	if errors.Is(err, fs.ErrExist) {
		return loadNodeKey(path) // created concurrently: use that one
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// loadNodeKey reads the node key at path; a missing file wraps
// fs.ErrNotExist.
func loadNodeKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("node key: read: %w", err)
	}
	if err := checkKeyFileMode(path); err != nil {
		return nil, err
	}
	key, err := parseECKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("node key %s: %w: restore it, or delete it and node.crt to join the cluster again", path, err)
	}
	return key, nil
}

// SaveNodeCert stores the node certificate certDER and the cluster CA
// certificate caDER in dir (node.crt, ca.crt), after checking that the
// certificate names a node, chains to that CA, is valid now and belongs to
// the key in dir/node.key. Each file is replaced atomically.
func SaveNodeCert(dir string, certDER, caDER []byte) error {
	if _, err := buildIdentity(dir, certDER, caDER, time.Now()); err != nil {
		return err
	}
	if err := writeSecretFile(filepath.Join(dir, NodeCAFile), encodeCertPEM(caDER)); err != nil {
		return err
	}
	if err := writeSecretFile(filepath.Join(dir, NodeCertFile), encodeCertPEM(certDER)); err != nil {
		return err
	}
	if err := pkiSyncDir(dir); err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	return nil
}

// ErrClusterMemberDataDir is returned by CheckStandaloneDataDir for the
// data directory of a cluster member.
var ErrClusterMemberDataDir = errors.New("this data directory belongs to a cluster member")

// CheckStandaloneDataDir returns an error wrapping ErrClusterMemberDataDir
// when dataDir holds a cluster member's identity (a node certificate, or
// the mark of a node that enrolled) and so must not be opened as a single
// node: its Raft state names the cluster's servers, and a standalone node
// would reach them over plain TCP, without mutual TLS, and could elect a
// leader with other such nodes and take writes the cluster never sees.
func CheckStandaloneDataDir(dataDir string) error {
	dir := ClusterDir(dataDir)
	for _, f := range []string{NodeCertFile, enrolledFileName} {
		path := filepath.Join(dir, f)
		_, err := os.Stat(path)
		switch {
		case err == nil:
			return fmt.Errorf("%w (%s exists): start it as a cluster node (gojinn-node agent --cluster, or cluster.enabled = true in the config file) so it rejoins over mutual TLS. "+
				"To run a single node instead, start with an empty data directory and restore a backup into it", ErrClusterMemberDataDir, path)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("check whether %s belongs to a cluster member: %w", dataDir, err)
		}
	}
	return nil
}

// LoadNodeIdentity loads the node's key, certificate and cluster CA from
// dir (DATA/cluster) and checks them as SaveNodeCert does. It wraps
// ErrNoNodeIdentity when there is no certificate yet.
func LoadNodeIdentity(dir string) (*NodeIdentity, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, NodeCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: bootstrap a cluster or join one with a join token", ErrNoNodeIdentity, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("node identity: read certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, NodeCAFile))
	if err != nil {
		return nil, fmt.Errorf("node identity: read the cluster CA certificate %s: %w (join the cluster again)", filepath.Join(dir, NodeCAFile), err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("node identity: %s: %w (join the cluster again)", filepath.Join(dir, NodeCertFile), err)
	}
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("node identity: %s: %w (join the cluster again)", filepath.Join(dir, NodeCAFile), err)
	}
	return buildIdentity(dir, cert.Raw, ca.Raw, time.Now())
}

// buildIdentity checks a node certificate against the CA and the key in
// dir and assembles the identity.
func buildIdentity(dir string, certDER, caDER []byte, now time.Time) (*NodeIdentity, error) {
	key, err := loadNodeKey(filepath.Join(dir, NodeKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("node identity: %s is missing: the certificate is useless without its key; join the cluster again: %w", filepath.Join(dir, NodeKeyFile), ErrInvalidIdentity)
	}
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("node identity: cluster CA certificate: %v: %w", err, ErrInvalidIdentity)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("node identity: the cluster CA certificate is not a CA: %w", ErrInvalidIdentity)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("node identity: node certificate: %v: %w", err, ErrInvalidIdentity)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("node identity: the node certificate does not verify against the cluster CA (%v); if it expired, renew it, else join the cluster again: %w", err, ErrInvalidIdentity)
	}
	nodeID, err := nodeIDFromCert(cert)
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("node identity: the certificate of node %s does not belong to %s; join the cluster again: %w", nodeID, filepath.Join(dir, NodeKeyFile), ErrInvalidIdentity)
	}
	return &NodeIdentity{
		nodeID: nodeID,
		cert:   cert,
		ca:     ca,
		pool:   pool,
		// The chain includes the CA so a joining node, which knows the CA
		// only by its fingerprint, can verify the seed (RequestJoin).
		tlsCert: tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Raw}, PrivateKey: key, Leaf: cert},
	}, nil
}

// BootstrapIdentity gives the node that bootstraps a cluster its key
// material in dir (DATA/cluster): the cluster CA in dir/ca (created once),
// the node key, and a node certificate for nodeID with ips and dns. A
// valid identity for nodeID already in dir is kept, so a restart changes
// nothing.
func BootstrapIdentity(dir, nodeID string, ips []net.IP, dns []string) (*ClusterCA, *NodeIdentity, error) {
	ca, _, err := LoadOrCreateClusterCA(filepath.Join(dir, ClusterCADirName))
	if err != nil {
		return nil, nil, err
	}
	if id, err := LoadNodeIdentity(dir); err == nil && id.NodeID() == nodeID && id.ca.Equal(ca.cert) {
		return ca, id, nil
	}
	key, err := LoadOrCreateNodeKey(dir)
	if err != nil {
		return nil, nil, err
	}
	der, err := ca.IssueNode(nodeID, &key.PublicKey, ips, dns)
	if err != nil {
		return nil, nil, err
	}
	if err := SaveNodeCert(dir, der, ca.cert.Raw); err != nil {
		return nil, nil, err
	}
	id, err := LoadNodeIdentity(dir)
	if err != nil {
		return nil, nil, err
	}
	return ca, id, nil
}
