package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// The peer API is how nodes talk to each other: joining the Raft cluster,
// forwarding writes and restores to the leader, fetching module blobs and
// asking whether a version is servable. It is never exposed to clients; every
// call is authenticated by PeerAuth (mutual TLS with the cluster CA in
// production).

// PeerAuth authenticates a node-to-node request; nil error means allowed.
type PeerAuth func(r *http.Request) error

// RequireClientCert allows requests whose TLS client certificate verified
// against the server's ClientCAs (the cluster CA).
func RequireClientCert(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return errors.New("a cluster client certificate is required")
	}
	return nil
}

// SharedSecretAuth allows requests carrying the cluster secret as a bearer
// token (compared in constant time). It is for in-process test clusters
// and setups that terminate mutual TLS elsewhere.
func SharedSecretAuth(secret string) PeerAuth {
	want := sha256.Sum256([]byte(secret))
	return func(r *http.Request) error {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return errors.New("wrong or missing cluster secret")
		}
		return nil
	}
}

// ReadyState is what a node says about one function version.
type ReadyState struct {
	// State is "ready", "failed" or "pending".
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// JoinRequest asks the leader to add a server.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
}

// PeerInfo is what a node says about itself to peers.
type PeerInfo struct {
	NodeID     string `json:"node_id"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// PeerAPIConfig configures NewPeerAPI.
type PeerAPIConfig struct {
	Store *Store
	// Rec answers readiness questions; Ready, when set, replaces it.
	Rec   *Reconciler
	Ready func(name string, version int64) ReadyState
	// Info describes this node (GET /peer/v1/info).
	Info func() PeerInfo
	// Artifacts returns this node's compiled artifacts of a module (GET
	// /peer/v1/artifacts/{sha}); when nil, Rec's are served, if any.
	Artifacts func(sha string) (*runtime.Artifacts, error)
	// BeforeJoin, when set, sees every join request first; handled means
	// it answered (err nil: accepted), e.g. while a bootstrap waits for
	// the expected servers.
	BeforeJoin func(ctx context.Context, req JoinRequest) (handled bool, err error)
	// Logs holds this node's guest log lines (GET /peer/v1/logs/{name});
	// nil answers with none.
	Logs   LogSource
	Auth   PeerAuth
	Logger *slog.Logger
}

type peerAPI struct {
	cfg PeerAPIConfig
	log *slog.Logger
}

// NewPeerAPI returns the node-to-node HTTP handler.
func NewPeerAPI(cfg PeerAPIConfig) (http.Handler, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("cluster: PeerAPIConfig needs Store and Auth")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &peerAPI{cfg: cfg, log: cfg.Logger.With("component", "peer-api")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /peer/v1/join", p.join)
	mux.HandleFunc("POST /peer/v1/apply", p.apply)
	mux.HandleFunc("POST /peer/v1/readindex", p.readIndex)
	mux.HandleFunc("POST /peer/v1/restore", p.restore)
	mux.HandleFunc("POST /peer/v1/remove", p.remove)
	mux.HandleFunc("GET /peer/v1/blobs/{sha}", p.blob)
	mux.HandleFunc("GET /peer/v1/artifacts/{sha}", p.artifacts)
	mux.HandleFunc("GET /peer/v1/ready/{name}/{version}", p.ready)
	mux.HandleFunc("GET /peer/v1/info", p.info)
	mux.HandleFunc("GET /peer/v1/logs/{name}", p.logs)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Auth(r); err != nil {
			p.log.Warn("peer request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			peerError(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		}
		mux.ServeHTTP(w, r)
	}), nil
}

type peerErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func peerError(w http.ResponseWriter, status int, code, msg string) {
	var b peerErrorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *peerAPI) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.ID == "" || req.RaftAddr == "" {
		peerError(w, http.StatusBadRequest, "bad_request", "want {id, raft_addr, voter}")
		return
	}
	if p.cfg.BeforeJoin != nil {
		if handled, err := p.cfg.BeforeJoin(r.Context(), req); handled {
			if err != nil {
				p.fail(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	st := p.cfg.Store
	_, err := st.node.addServerCapped(r.Context(), req.ID, req.RaftAddr, req.Voter)
	var nl *NotLeaderError
	if errors.As(err, &nl) && st.peerClient != nil && nl.LeaderID != "" && nl.LeaderID != st.node.ID() {
		// Any node takes a join: a follower passes it to the leader.
		if url, ok := st.peers.PeerURL(nl.LeaderID); ok {
			err = st.peerClient.Join(r.Context(), url, req)
		}
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *peerAPI) remove(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.ID == "" {
		peerError(w, http.StatusBadRequest, "bad_request", "want {id}")
		return
	}
	if err := p.cfg.Store.node.RemoveServer(r.Context(), req.ID); err != nil {
		p.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// applyResponse carries an ApplyResult across the wire.
type applyResponse struct {
	Version storage.Version `json:"version"`
	// Index is the entry's Raft index for a registry command, and for a
	// KV command an index at or above its entry's (the leader's applied
	// index once the entry applied: KV results carry none). The follower
	// that forwarded the command waits until it has applied this index
	// (Store.awaitLocal). Zero from a leader of an older build.
	Index   uint64           `json:"index,omitempty"`
	KV      storage.KVResult `json:"kv"`
	Code    string           `json:"code,omitempty"`
	Message string           `json:"message,omitempty"`
	// Conflict carries a KV compare-and-set failure whole, so the caller
	// sees the key's current version.
	Conflict *storage.KVConflictError `json:"conflict,omitempty"`
}

func (p *peerAPI) apply(w http.ResponseWriter, r *http.Request) {
	cmd, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		peerError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	resp, err := p.cfg.Store.node.Apply(r.Context(), cmd)
	if err != nil {
		p.fail(w, err)
		return
	}
	res, ok := resp.(storage.ApplyResult)
	if !ok {
		peerError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("the state machine answered %T", resp))
		return
	}
	out := applyResponse{Version: res.Version, Index: res.Index, KV: res.KV}
	if out.Index == 0 && storage.IsKVCommand(cmd) {
		// Apply returned once this node applied the entry, so its
		// applied index covers it.
		out.Index = p.cfg.Store.reg.State().Applied()
	}
	if res.Err != nil {
		out.Code, out.Message = errorCode(res.Err), res.Err.Error()
		var c *storage.KVConflictError
		if errors.As(res.Err, &c) {
			out.Conflict = c
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (p *peerAPI) blob(w http.ResponseWriter, r *http.Request) {
	rc, size, err := p.cfg.Store.blobs.Open(r.PathValue("sha"))
	if err != nil {
		p.fail(w, err)
		return
	}
	defer func() { _ = rc.Close() }()
	w.Header().Set("Content-Type", "application/wasm")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if _, err := io.Copy(w, rc); err != nil {
		p.log.Warn("sending a blob to a peer", "sha256", r.PathValue("sha"), "err", err)
	}
}

func (p *peerAPI) ready(w http.ResponseWriter, r *http.Request) {
	v, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil {
		peerError(w, http.StatusBadRequest, "bad_request", "version must be an integer")
		return
	}
	switch {
	case p.cfg.Ready != nil:
		writeJSON(w, http.StatusOK, p.cfg.Ready(r.PathValue("name"), v))
	case p.cfg.Rec != nil:
		writeJSON(w, http.StatusOK, p.cfg.Rec.VersionState(r.PathValue("name"), v))
	default:
		writeJSON(w, http.StatusOK, ReadyState{State: "pending"})
	}
}

func (p *peerAPI) info(w http.ResponseWriter, _ *http.Request) {
	info := PeerInfo{NodeID: p.cfg.Store.node.ID()}
	if p.cfg.Info != nil {
		info = p.cfg.Info()
	}
	writeJSON(w, http.StatusOK, info)
}

func (p *peerAPI) fail(w http.ResponseWriter, err error) {
	var nl *NotLeaderError
	switch {
	case outcomeUnknown(err):
		// Before not_leader: a leader that lost leadership mid-commit
		// must not have the follower retry the write.
		w.Header().Set("Retry-After", "1")
		peerError(w, http.StatusServiceUnavailable, "unknown_outcome", err.Error())
	case errors.As(err, &nl):
		w.Header().Set("Retry-After", "1")
		peerError(w, http.StatusServiceUnavailable, "not_leader", err.Error())
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		peerError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, storage.ErrBlobNotFound):
		peerError(w, http.StatusNotFound, "blob_not_found", err.Error())
	case errors.Is(err, storage.ErrInvalid):
		peerError(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		peerError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// errorCode names a registry error for the wire; codeError reverses it.
func errorCode(err error) string {
	for code, s := range peerSentinels {
		if errors.Is(err, s) {
			return code
		}
	}
	return "internal"
}

var peerSentinels = map[string]error{
	"function_not_found": storage.ErrFunctionNotFound,
	"version_not_found":  storage.ErrVersionNotFound,
	"blob_not_found":     storage.ErrBlobNotFound,
	"hash_mismatch":      storage.ErrHashMismatch,
	"invalid":            storage.ErrInvalid,
	"route_conflict":     storage.ErrRouteConflict,
	"not_leader":         ErrNotLeader,
	"unavailable":        ErrUnavailable,
	"unknown_outcome":    ErrUnknownOutcome,
	"kv_not_found":       storage.ErrKVNotFound,
	"kv_conflict":        storage.ErrKVConflict,
	"kv_too_large":       storage.ErrKVTooLarge,
	"kv_quota":           storage.ErrKVQuota,
	"kv_forbidden":       storage.ErrKVForbidden,
	"bad_backup":         ErrBadBackup,
}

func codeError(code, msg string) error {
	if s, ok := peerSentinels[code]; ok {
		return fmt.Errorf("%w: %s", s, msg)
	}
	return errors.New(msg)
}

// PeerResolver maps Raft server IDs to peer API base URLs.
type PeerResolver interface {
	PeerURL(id string) (string, bool)
}

// StaticPeers is a PeerResolver from a map kept up to date by its owner
// (membership events in a node, the harness in tests).
type StaticPeers struct {
	mu   sync.RWMutex
	urls map[string]string
}

// Set records id's peer API URL.
func (s *StaticPeers) Set(id, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.urls == nil {
		s.urls = map[string]string{}
	}
	s.urls[id] = url
}

// PeerURL implements PeerResolver.
func (s *StaticPeers) PeerURL(id string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.urls[id]
	return u, ok
}

// PeerClient calls other nodes' peer APIs.
type PeerClient struct {
	HTTP *http.Client
	// Secret, when set, is sent as the bearer token (SharedSecretAuth).
	Secret string
}

func (c *PeerClient) do(ctx context.Context, method, url string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, &noAnswerError{fmt.Errorf("%w: peer %s: %w", ErrUnavailable, url, err)}
	}
	if resp.StatusCode >= 300 {
		defer func() { _ = resp.Body.Close() }()
		var e peerErrorBody
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "internal", resp.Status
		}
		return nil, fmt.Errorf("peer %s: %w", url, codeError(e.Error.Code, e.Error.Message))
	}
	return resp, nil
}

// Apply sends an encoded command to the leader's peer API. An error
// matching ErrUnknownOutcome means the leader received the command but
// its answer was lost (a timeout, a broken connection, a garbled body),
// or the leader itself cannot tell whether it applied: the command may
// have been applied, and must not be sent again blindly. Other errors
// mean it was not applied.
func (c *PeerClient) Apply(ctx context.Context, base string, cmd []byte) (storage.ApplyResult, error) {
	// The whole request was written: from then on the leader may apply
	// it whatever happens to the answer.
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				sent.Store(true)
			}
		},
	})
	resp, err := c.do(ctx, "POST", base+"/peer/v1/apply", bytes.NewReader(cmd))
	var na *noAnswerError
	if errors.As(err, &na) && sent.Load() {
		return storage.ApplyResult{}, unknownOutcome(err)
	}
	if err != nil {
		return storage.ApplyResult{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out applyResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return storage.ApplyResult{}, unknownOutcome(fmt.Errorf("peer %s: decode apply result: %w", base, err))
	}
	res := storage.ApplyResult{Version: out.Version, Index: out.Index, KV: out.KV}
	switch {
	case out.Conflict != nil:
		res.Err = out.Conflict
	case out.Code != "":
		res.Err = codeError(out.Code, out.Message)
	}
	return res, nil
}

// Info asks the node at base about itself.
func (c *PeerClient) Info(ctx context.Context, base string) (PeerInfo, error) {
	resp, err := c.do(ctx, "GET", base+"/peer/v1/info", nil)
	if err != nil {
		return PeerInfo{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var info PeerInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return PeerInfo{}, fmt.Errorf("peer %s: decode info: %w", base, err)
	}
	return info, nil
}

// Join asks the node at base (any node; followers forward) to add a
// server.
func (c *PeerClient) Join(ctx context.Context, base string, req JoinRequest) error {
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, "POST", base+"/peer/v1/join", bytes.NewReader(b))
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Remove asks the node at base (the leader) to remove a server.
func (c *PeerClient) Remove(ctx context.Context, base, id string) error {
	b, _ := json.Marshal(JoinRequest{ID: id})
	resp, err := c.do(ctx, "POST", base+"/peer/v1/remove", bytes.NewReader(b))
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// FetchBlob copies the blob sha from the node at base into blobs, which
// verifies the hash.
func (c *PeerClient) FetchBlob(ctx context.Context, base, sha string, blobs *storage.Blobs, maxBytes int64) error {
	resp, err := c.do(ctx, "GET", base+"/peer/v1/blobs/"+sha, nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := blobs.Put(sha, resp.Body, maxBytes); err != nil {
		return fmt.Errorf("blob %s from %s: %w", sha, base, err)
	}
	return nil
}

// Ready asks the node at base whether it serves name at version.
func (c *PeerClient) Ready(ctx context.Context, base, name string, version int64) (ReadyState, error) {
	resp, err := c.do(ctx, "GET", fmt.Sprintf("%s/peer/v1/ready/%s/%d", base, name, version), nil)
	if err != nil {
		return ReadyState{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var st ReadyState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return ReadyState{}, fmt.Errorf("peer %s: decode ready state: %w", base, err)
	}
	return st, nil
}

// retryBackoff is the pause between forwarding attempts while the cluster
// has no leader.
const retryBackoff = 100 * time.Millisecond
