package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// JoinPath is the peer API endpoint where a joining node trades the join
// token's secret and a CSR for its node certificate. It is the one peer
// endpoint reachable without a client certificate: mount JoinHandler
// outside the peer API's client-certificate check. Adding the node to Raft
// (POST /peer/v1/join) comes after, with the new certificate.
const JoinPath = "/peer/v1/enroll"

// Error codes of the join endpoint, in the admin API's error format.
const (
	CodeJoinRefused = "join_refused" // 403: wrong or rotated secret, or Admit said no
	CodeRateLimited = "rate_limited" // 429 + Retry-After: too many failed joins from this address
)

// joinProtocolVersion is the version of JoinTokenRequest a node sends.
const joinProtocolVersion = 1

// maxJoinBody caps join requests and answers: a CSR and two certificates
// are about 2 KiB.
const maxJoinBody = 64 << 10

// JoinTokenRequest is what a joining node posts to JoinPath, over TLS to a seed
// it verified against the token's CA fingerprint.
type JoinTokenRequest struct {
	// Version is the join protocol version (1).
	Version int `json:"version"`
	// NodeID is the ID the node asks for (validateNodeID's rules).
	NodeID string `json:"node_id"`
	// Secret is the token's 32-byte secret.
	Secret []byte `json:"secret"`
	// CSR is a DER certificate request signed with the node's key; only
	// its public key, and its subject CN (which must be NodeID or empty),
	// are used.
	CSR []byte `json:"csr"`
}

// JoinResponse is the seed's answer to a successful join.
type JoinResponse struct {
	// NodeID is the node ID the certificate names.
	NodeID string `json:"node_id"`
	// NodeCert is the node's certificate (DER), signed by the cluster CA.
	NodeCert []byte `json:"node_cert"`
	// CACert is the cluster CA certificate (DER), the only root the node
	// will trust.
	CACert []byte `json:"ca_cert"`
	// GossipKey is the memberlist key the seed encrypts with (its
	// keyring's primary); empty when the seed hands out none
	// (JoinOptions.GossipKeys).
	GossipKey []byte `json:"gossip_key,omitempty"`
	// GossipKeys is the seed's whole gossip keyring, primary first (so
	// GossipKeys[0] is GossipKey). A node that enrolls while a key
	// rotation is under way needs every key: some members may still
	// encrypt with the old key, others already with the new one.
	GossipKeys [][]byte `json:"gossip_keys,omitempty"`
}

// Keyring is the gossip keyring the answer hands over, primary first:
// GossipKeys, or GossipKey alone from a seed that sends only that.
func (r *JoinResponse) Keyring() [][]byte {
	if len(r.GossipKeys) > 0 {
		return r.GossipKeys
	}
	if len(r.GossipKey) > 0 {
		return [][]byte{r.GossipKey}
	}
	return nil
}

// JoinOptions configures the seed side of joining. The zero value works.
type JoinOptions struct {
	// Admit, when set, is asked after the secret and the CSR checked out
	// and before a certificate is issued; an error refuses the join with
	// its message (e.g. the node ID belongs to another live member).
	Admit func(ctx context.Context, nodeID string) error
	// GossipKeys, when set, supplies the gossip keyring handed to the
	// joiner, primary first (JoinResponse.GossipKeys and GossipKey).
	GossipKeys func() ([][]byte, error)
	// MaxFailures is how many failed joins an address may make in a row
	// before it is refused (default 5); FailureRefill is how often it
	// regains one attempt (default 12 s, so 5 a minute).
	MaxFailures   int
	FailureRefill time.Duration
	// Logger gets one line per join and per refusal; nil discards. The
	// secret is never logged.
	Logger *slog.Logger

	now func() time.Time // tests move the clock
}

// JoinHandler returns the seed side of joining, to mount at JoinPath on a
// listener using NodeIdentity.APIServerTLS: it checks the secret against
// secretHash in constant time, has ca sign the node's key, and answers
// with the certificate and the CA. Failed attempts are rate limited per
// remote address (IPv6: per /64).
func JoinHandler(ca *ClusterCA, secretHash [32]byte, opts JoinOptions) http.Handler {
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 5
	}
	if opts.FailureRefill <= 0 {
		opts.FailureRefill = 12 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	return &joinHandler{
		ca:      ca,
		hash:    secretHash,
		opts:    opts,
		log:     opts.Logger.With("component", "cluster.join"),
		limiter: newFailLimiter(opts.MaxFailures, opts.FailureRefill, 4096),
	}
}

type joinHandler struct {
	ca      *ClusterCA
	hash    [32]byte
	opts    JoinOptions
	log     *slog.Logger
	limiter *failLimiter
}

func (h *joinHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJoinError(w, apiErrorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use POST to join"))
		return
	}
	key := remoteKey(r.RemoteAddr)
	if ok, wait := h.limiter.allow(key, h.opts.now()); !ok {
		ae := apiErrorf(http.StatusTooManyRequests, CodeRateLimited, "too many failed joins from this address; retry in %s with a valid token", wait.Round(time.Second))
		ae.RetryAfter = wait
		writeJoinError(w, ae)
		return
	}
	resp, err := h.join(r)
	if err != nil {
		h.limiter.fail(key, h.opts.now())
		ae := toAPIError(err)
		h.log.Warn("join refused", "remote", r.RemoteAddr, "code", ae.Code, "reason", ae.Message)
		writeJoinError(w, ae)
		return
	}
	h.log.Info("node joined", "node_id", resp.NodeID, "remote", r.RemoteAddr)
	writeJoinJSON(w, http.StatusOK, resp)
}

// join checks one request and issues the certificate. Every error is an
// *APIError.
func (h *joinHandler) join(r *http.Request) (*JoinResponse, error) {
	if r.TLS == nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "joining needs TLS: serve %s on a listener with NodeIdentity.APIServerTLS", JoinPath)
	}
	var req JoinTokenRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJoinBody+1))
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "read the join request: %v", err)
	}
	if len(body) > maxJoinBody {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "a join request is at most %d bytes", maxJoinBody)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "malformed join request: %v", err)
	}
	if req.Version != joinProtocolVersion {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "join protocol version %d is not supported (this node speaks %d): run the same gojinn version on both nodes", req.Version, joinProtocolVersion)
	}
	// The secret is checked before anything costly, in constant time
	// (both sides are hashed, so lengths never leak either).
	sum := sha256.Sum256(req.Secret)
	if subtle.ConstantTimeCompare(sum[:], h.hash[:]) != 1 {
		return nil, apiErrorf(http.StatusForbidden, CodeJoinRefused, "the join token's secret is not valid for this cluster (wrong token, or it was rotated): ask the operator for a current join token")
	}
	if err := validateNodeID(req.NodeID); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "the certificate request does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "the certificate request is not signed by its own key: %v", err)
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != req.NodeID {
		return nil, apiErrorf(http.StatusBadRequest, CodeBadRequest, "the certificate request names node %q but the join asks for %q", cn, req.NodeID)
	}
	if h.opts.Admit != nil {
		if err := h.opts.Admit(r.Context(), req.NodeID); err != nil {
			return nil, apiErrorf(http.StatusForbidden, CodeJoinRefused, "node %s may not join: %v", req.NodeID, err)
		}
	}
	der, err := h.ca.IssueNode(req.NodeID, csr.PublicKey, csr.IPAddresses, csr.DNSNames)
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	resp := &JoinResponse{NodeID: req.NodeID, NodeCert: der, CACert: h.ca.cert.Raw}
	if h.opts.GossipKeys != nil {
		ring, err := h.opts.GossipKeys()
		if err != nil {
			return nil, apiErrorf(http.StatusInternalServerError, CodeInternal, "read the gossip keyring: %v", err)
		}
		if len(ring) > 0 {
			resp.GossipKey, resp.GossipKeys = ring[0], ring
		}
	}
	return resp, nil
}

// writeJoinError writes ae in the admin API's error format.
func writeJoinError(w http.ResponseWriter, ae *APIError) {
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJoinJSON(w, ae.Status, struct {
		Error *APIError `json:"error"`
	}{ae})
}

// writeJoinJSON writes v with status.
func writeJoinJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintln(&buf, `{"error":{"code":"internal","message":"internal error: cannot encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
