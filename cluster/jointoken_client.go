package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// RequestJoin trades token for a node certificate at the seed at seedAddr
// (host:port of a node's peer API). It dials over TLS without a client
// certificate and accepts the seed only if its chain holds the CA whose
// fingerprint the token pins (it does not know the CA yet) and the seed's
// certificate is a node certificate signed by it; then it sends the
// token's secret and a CSR signed with key, and checks the answer: the CA
// is the pinned one and the certificate is for key and nodeID. Save the
// result with SaveNodeCert.
//
// Errors wrap ErrSeedNotTrusted (the seed failed the pin: wrong address,
// a token of another cluster, or someone in between), ErrJoinRefused
// (wrong or rotated secret) or ErrJoinRateLimited; a refusal also wraps
// the seed's *APIError.
func RequestJoin(ctx context.Context, seedAddr string, token JoinToken, key crypto.Signer, nodeID string) (*JoinResponse, error) {
	if err := validateNodeID(nodeID); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if _, _, err := net.SplitHostPort(seedAddr); err != nil {
		return nil, fmt.Errorf("join: seed address %q must be host:port of a node's peer API: %w", seedAddr, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeID}}, key)
	if err != nil {
		return nil, fmt.Errorf("join: create the certificate request with the node key: %w", err)
	}
	body, err := json.Marshal(JoinTokenRequest{Version: joinProtocolVersion, NodeID: nodeID, Secret: token.secret[:], CSR: csr})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig:     pinnedTLS(token.CAFingerprint),
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   true, // one request; nothing lingers after
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+seedAddr+JoinPath, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, ErrSeedNotTrusted) {
			return nil, fmt.Errorf("join via %s: %w", seedAddr, err)
		}
		return nil, fmt.Errorf("join via %s: %w (is the address a node's peer API, and is it up?)", seedAddr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinBody+1))
	if err != nil {
		return nil, fmt.Errorf("join via %s: read the answer: %w", seedAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, joinAnswerError(seedAddr, resp, data)
	}
	var jr JoinResponse
	if len(data) > maxJoinBody {
		return nil, fmt.Errorf("join via %s: the answer is larger than %d bytes", seedAddr, maxJoinBody)
	}
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, fmt.Errorf("join via %s: malformed answer: %w", seedAddr, err)
	}
	if err := checkJoinResponse(&jr, token.CAFingerprint, key.Public(), nodeID); err != nil {
		return nil, fmt.Errorf("join via %s: %w", seedAddr, err)
	}
	return &jr, nil
}

// joinAnswerError turns a non-200 answer into an error wrapping the
// matching sentinel and the seed's *APIError.
func joinAnswerError(seedAddr string, resp *http.Response, data []byte) error {
	var body struct {
		Error *APIError `json:"error"`
	}
	ae := &APIError{Status: resp.StatusCode, Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		ae.Code, ae.Message = body.Error.Code, body.Error.Message
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			ae.RetryAfter = time.Duration(n) * time.Second
		}
	}
	switch ae.Code {
	case CodeJoinRefused:
		return fmt.Errorf("join via %s: %w: %w", seedAddr, ErrJoinRefused, ae)
	case CodeRateLimited:
		return fmt.Errorf("join via %s: %w: %w", seedAddr, ErrJoinRateLimited, ae)
	}
	return fmt.Errorf("join via %s: %w", seedAddr, ae)
}

// pinnedTLS is the joiner's TLS config. The standard verification cannot
// run (the joiner has no roots yet), so it is replaced by VerifyConnection,
// which checks the chain against the CA the token pins.
func pinnedTLS(fingerprint [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: NodeServerName,
		// Verification is not skipped: VerifyConnection does it, against
		// the pinned CA instead of system roots.
		InsecureSkipVerify: true, //nolint:gosec // see VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinnedSeed(cs, fingerprint)
		},
	}
}

// verifyPinnedSeed accepts a seed whose chain holds the CA with the given
// fingerprint and whose leaf is a node certificate that CA signed.
func verifyPinnedSeed(cs tls.ConnectionState, fingerprint [32]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: it presented no certificate", ErrSeedNotTrusted)
	}
	var ca *x509.Certificate
	for _, c := range cs.PeerCertificates[1:] {
		if sha256.Sum256(c.Raw) == fingerprint {
			ca = c
			break
		}
	}
	if ca == nil {
		return fmt.Errorf("%w: its certificate chain does not hold the cluster CA the token pins (sha256 %s…): check the seed address and that the token belongs to that cluster",
			ErrSeedNotTrusted, hex.EncodeToString(fingerprint[:8]))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: NodeServerName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: its certificate does not verify against the pinned cluster CA: %w", ErrSeedNotTrusted, err)
	}
	if _, err := nodeIDFromCert(leaf); err != nil {
		return fmt.Errorf("%w: %w", ErrSeedNotTrusted, err)
	}
	return nil
}

// checkJoinResponse makes sure the seed returned the pinned CA and a node
// certificate for pub and nodeID that the CA signed.
func checkJoinResponse(jr *JoinResponse, fingerprint [32]byte, pub crypto.PublicKey, nodeID string) error {
	if sha256.Sum256(jr.CACert) != fingerprint {
		return fmt.Errorf("%w: it answered with a CA other than the one the token pins", ErrSeedNotTrusted)
	}
	ca, err := x509.ParseCertificate(jr.CACert)
	if err != nil {
		return fmt.Errorf("the CA certificate in the answer does not parse: %w", err)
	}
	cert, err := x509.ParseCertificate(jr.NodeCert)
	if err != nil {
		return fmt.Errorf("the node certificate in the answer does not parse: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the node certificate in the answer does not verify against the cluster CA: %w", err)
	}
	got, err := nodeIDFromCert(cert)
	if err != nil {
		return fmt.Errorf("the certificate in the answer: %w", err)
	}
	if got != nodeID {
		return fmt.Errorf("the certificate in the answer names node %q, not %q: %w", got, nodeID, ErrInvalidIdentity)
	}
	if len(jr.GossipKeys) > 0 && !bytes.Equal(jr.GossipKeys[0], jr.GossipKey) {
		return errors.New("the gossip keyring in the answer does not start with its primary key")
	}
	for i, k := range jr.Keyring() {
		if err := validateGossipKey(k); err != nil {
			return fmt.Errorf("the gossip keyring in the answer, key %d: %w", i, err)
		}
	}
	if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(cert.PublicKey) {
		return fmt.Errorf("the certificate in the answer is not for this node's key: %w", ErrInvalidIdentity)
	}
	return nil
}
