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
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// Registry is what the admin API needs from the replicated function
// registry. *Store satisfies it; tests use an in-memory one.
type Registry interface {
	// Deploy proposes a new version of name and returns it once committed.
	Deploy(ctx context.Context, name string, spec storage.Spec) (storage.Version, error)
	// Rollback makes version to active again (to == 0: the previously
	// active version) and returns the now-active version.
	Rollback(ctx context.Context, name string, to int64) (storage.Version, error)
	// Remove deletes name; storage.ErrFunctionNotFound when unknown.
	Remove(ctx context.Context, name string) error
	// Functions returns every function, sorted by name, from local state.
	Functions() []storage.Function
	// Function returns one function from local state.
	Function(name string) (storage.Function, bool)
	// Status describes this node.
	Status() Status
	// Subscribe returns a channel that receives a value after every
	// change of this node's registry, and a function that ends the
	// subscription (storage.Registry.Subscribe): a deploy's or rollback's
	// wait watches it for a later write that overtakes the version.
	Subscribe() (<-chan struct{}, func())
}

// BlobStore is what the admin API needs from the content-addressed module
// store.
type BlobStore interface {
	// Has reports whether the module with this sha256 is stored.
	Has(sha string) bool
	// Put stores at most maxBytes from r under sha, verifying the hash
	// (storage.ErrHashMismatch, storage.ErrInvalid).
	Put(sha string, r io.Reader, maxBytes int64) (int64, error)
}

// Defaults of APIConfig.
const (
	// DefaultMaxModuleBytes caps module uploads.
	DefaultMaxModuleBytes = 64 << 20
	// DefaultWaitTimeout bounds how long a deploy or rollback waits for the
	// node to serve the new version.
	DefaultWaitTimeout = 60 * time.Second
	// MaxWaitTimeout is the longest wait a request may ask for.
	MaxWaitTimeout = 10 * time.Minute
	// MinWaitTimeout is the shortest: less cannot see even a small module
	// served, and the request would commit a version, then fail.
	MinWaitTimeout = time.Second
	// maxJSONBytes caps JSON request bodies.
	maxJSONBytes = 1 << 20
)

// APIConfig configures the admin API. The node fills it; Registry, Blobs
// and TokenHash are required.
type APIConfig struct {
	// Registry is the replicated function registry.
	Registry Registry
	// Blobs stores module bytes by sha256.
	Blobs BlobStore
	// TokenHash is the sha256 of the admin token (see LoadOrCreateToken).
	TokenHash [32]byte
	// MaxModuleBytes caps a module upload. Default DefaultMaxModuleBytes
	// (64 MiB).
	MaxModuleBytes int64
	// WaitTimeout bounds a deploy's or rollback's wait for the node to serve
	// the new version when the request does not say. Default
	// DefaultWaitTimeout (60 s). The HTTP server's WriteTimeout must be
	// longer.
	WaitTimeout time.Duration
	// Check validates a deploy before it is proposed: it compiles the
	// module with the runtime (returning the compiler's reason) and checks
	// the routes against every other function's (conflicts name the other
	// function). Its errors become 422 check_failed with their message.
	// Nil skips the check. It sees this node's state only: the commit
	// refuses conflicts a concurrent write brought (storage.ErrRouteConflict,
	// also 422 check_failed).
	Check func(ctx context.Context, name string, spec storage.Spec) error
	// WaitReady blocks until this node serves name at version (compiled,
	// route table swapped) or ctx ends. The API also ends the wait when
	// this node's registry shows a later write overtook the version:
	// another version of name active (newer, or older after a rollback)
	// or name removed (409 superseded; the message says which). Nil means
	// deploys never wait.
	WaitReady func(ctx context.Context, name string, version int64) error
	// WaitRemoved blocks until this node routes nothing to name, after a
	// removal, or ctx ends. Nil means removals do not wait.
	WaitRemoved func(ctx context.Context, name string) error
	// Ready reports whether the node is ready to serve (for /readyz), with
	// a reason when not. Nil means always ready.
	Ready func() (bool, string)
	// Logger receives one line per request; never bodies or env values.
	// Default: discard.
	Logger *slog.Logger
	// Version is the node's build version, shown in /v1/status when the
	// registry leaves it empty.
	Version string
	// NodeName and RaftAddr describe this node in GET /v1/members when
	// Members is nil (a node outside cluster mode): its node_name and its
	// Raft address.
	NodeName, RaftAddr string
	// Members lists the cluster's members for GET /v1/members; nil on a
	// node without a cluster (the list then holds only this node).
	Members func() []MemberInfo
	// ForceLeave removes a member that is gone for good from the Raft
	// configuration and the members list, for DELETE
	// /v1/members/{name} (Agent.ForceLeave). Nil on a node without a
	// cluster: the endpoint then only refuses (this node is alive, other
	// names are unknown).
	ForceLeave func(ctx context.Context, name string) (ForceLeaveResult, error)
	// Logs holds the guest log lines GET /v1/functions/{name}/logs
	// serves (the node's *guestlog.Buffer); nil answers 501.
	Logs LogSource
	// NodeID names this node in the lines of ?nodes=all.
	NodeID string
	// PeerLogs fetches the other nodes' lines for ?nodes=all
	// (Agent.PeerLogs); nil on a node without a cluster, where nodes=all
	// covers this node alone.
	PeerLogs func(ctx context.Context, name string, q url.Values) []NodeLogs
	// LogHeartbeat is how often a log follower with nothing new gets a
	// keepalive line. Default DefaultLogHeartbeat (15 s).
	LogHeartbeat time.Duration
}

// api holds the handlers. It has no mutable state of its own.
type api struct {
	cfg APIConfig
	log *slog.Logger
}

// apiHandler is a handler that returns its error instead of writing it, so
// every error goes through writeError.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

// apiRoute is one endpoint.
type apiRoute struct {
	method, path string
	auth         bool
	h            apiHandler
}

// NewAPI returns the admin API handler. The node serves it on its own
// listener.
func NewAPI(cfg APIConfig) (http.Handler, error) {
	switch {
	case cfg.Registry == nil:
		return nil, fmt.Errorf("cluster: APIConfig.Registry is required: %w", storage.ErrInvalid)
	case cfg.Blobs == nil:
		return nil, fmt.Errorf("cluster: APIConfig.Blobs is required: %w", storage.ErrInvalid)
	case cfg.TokenHash == [32]byte{}:
		return nil, fmt.Errorf("cluster: APIConfig.TokenHash is required (use LoadOrCreateToken): %w", storage.ErrInvalid)
	case cfg.MaxModuleBytes < 0:
		return nil, fmt.Errorf("cluster: APIConfig.MaxModuleBytes %d is negative: %w", cfg.MaxModuleBytes, storage.ErrInvalid)
	case cfg.WaitTimeout < 0:
		return nil, fmt.Errorf("cluster: APIConfig.WaitTimeout %v is negative: %w", cfg.WaitTimeout, storage.ErrInvalid)
	}
	if cfg.MaxModuleBytes == 0 {
		cfg.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	a := &api{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a.routes(), nil
}

// routeTable lists every admin endpoint; docs/api.md's endpoint table
// lists each one (TestAPIEndpointsDocumented).
func (a *api) routeTable() []apiRoute {
	table := []apiRoute{
		{"GET", "/healthz", false, a.healthz},
		{"GET", "/readyz", false, a.readyz},
		{"HEAD", "/v1/blobs/{sha256}", true, a.headBlob},
		{"PUT", "/v1/blobs/{sha256}", true, a.putBlob},
		{"GET", "/v1/functions", true, a.listFunctions},
		{"GET", "/v1/functions/{name}", true, a.showFunction},
		{"POST", "/v1/functions/{name}", true, a.deploy},
		{"DELETE", "/v1/functions/{name}", true, a.removeFunction},
		{"GET", "/v1/functions/{name}/versions", true, a.versions},
		{"POST", "/v1/functions/{name}/rollback", true, a.rollback},
		{"GET", "/v1/status", true, a.status},
		{"GET", "/v1/members", true, a.members},
		{"DELETE", "/v1/members/{name}", true, a.forceLeave},
	}
	table = append(table, a.kvRoutes()...)
	table = append(table, a.logRoutes()...)
	table = append(table, a.backupRoutes()...)
	return table
}

// routes builds the mux. Every path also gets a method-less pattern that
// answers 405 with Allow, and "/" answers 404, both as JSON.
func (a *api) routes() http.Handler {
	table := a.routeTable()
	mux := http.NewServeMux()
	allow := map[string][]string{}
	authed := map[string]bool{}
	for _, rt := range table {
		mux.Handle(rt.method+" "+rt.path, a.wrap(rt.auth, rt.h))
		allow[rt.path] = append(allow[rt.path], rt.method)
		if rt.method == "GET" {
			allow[rt.path] = append(allow[rt.path], "HEAD")
		}
		authed[rt.path] = rt.auth
	}
	for path, methods := range allow {
		slices.Sort(methods)
		list := strings.Join(methods, ", ")
		mux.Handle(path, a.wrap(authed[path], func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", list)
			return apiErrorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s does not accept %s; use %s", r.URL.Path, r.Method, list)
		}))
	}
	notFound := func(w http.ResponseWriter, r *http.Request) error {
		return apiErrorf(http.StatusNotFound, CodeNotFound, "no endpoint %s %s; docs/api.md lists the endpoints", r.Method, r.URL.Path)
	}
	mux.Handle("/v1/", a.wrap(true, notFound))
	mux.Handle("/", a.wrap(false, notFound))
	unclean := a.wrap(false, func(w http.ResponseWriter, r *http.Request) error {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "path %q has an empty, \".\" or \"..\" segment; the API names nothing that way (percent-encode a dot in a KV key as %%2E, as the Go client does)", r.URL.EscapedPath())
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cleanPath(r.URL.EscapedPath()) {
			unclean.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath reports whether p has no empty, "." or ".." segment (a
// trailing slash aside). http.ServeMux answers such a path with a redirect
// to its cleaned form, and a client that follows it sends the request,
// method and body included, to another endpoint: `kv put "" k` became a
// share-list write to namespace k, `functions rollback .` a deploy.
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// wrap adds the token check, the error writer and the request log line.
func (a *api) wrap(auth bool, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		var err error
		if auth {
			sw.Header().Set("Cache-Control", "no-store")
			err = a.authorize(r)
		}
		if err == nil {
			err = h(sw, r)
		}
		if err != nil {
			a.writeError(sw, r, err)
		}
		level := slog.LevelInfo
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			level = slog.LevelDebug
		}
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		a.log.LogAttrs(r.Context(), level, "api request", attrs...)
	})
}

// authorize checks the bearer token in constant time against TokenHash.
func (a *api) authorize(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return apiErrorf(http.StatusUnauthorized, CodeUnauthorized,
			"missing admin token: send the header \"Authorization: Bearer <token>\" with the token the node printed at its first start")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return apiErrorf(http.StatusUnauthorized, CodeUnauthorized,
			"the Authorization header must be \"Bearer <token>\"")
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.cfg.TokenHash[:]) != 1 {
		return apiErrorf(http.StatusUnauthorized, CodeUnauthorized,
			"the admin token is not valid for this node; use the token the node printed at its first start (its sha256 is in DATA/admin-token.sha256)")
	}
	return nil
}

// writeError writes err as {"error":{"code":..,"message":..}}.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.Status == http.StatusUnauthorized {
		v := `Bearer realm="gojinn"`
		if r.Header.Get("Authorization") != "" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
	}
	a.writeJSON(w, ae.Status, struct {
		Error *APIError `json:"error"`
	}{ae})
}

// writeJSON writes v with status.
func (a *api) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // an API for people and scripts, not HTML pages
	err := enc.Encode(v)
	b := buf.Bytes()
	if err != nil {
		a.log.Error("api: encode response", "error", err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error: cannot encode the response"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// statusWriter remembers the status for the log line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// healthz answers 200 while the process serves HTTP.
func (a *api) healthz(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n") // a client that went away has nothing to learn
	return nil
}

// readyz answers 200 when the node is ready to serve, else 503 and why.
func (a *api) readyz(w http.ResponseWriter, _ *http.Request) error {
	if a.cfg.Ready != nil {
		if ok, reason := a.cfg.Ready(); !ok {
			return apiErrorf(http.StatusServiceUnavailable, CodeNotReady, "not ready: %s", reason)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n") // a client that went away has nothing to learn
	return nil
}

// status answers GET /v1/status.
func (a *api) status(w http.ResponseWriter, _ *http.Request) error {
	st := a.cfg.Registry.Status()
	st.Functions = len(a.cfg.Registry.Functions())
	if st.Version == "" {
		st.Version = a.cfg.Version
	}
	a.writeJSON(w, http.StatusOK, st)
	return nil
}

// MemberInfo is one node as GET /v1/members shows it.
type MemberInfo struct {
	// Name is the node's ID, its name in gossip and Raft.
	Name string `json:"name"`
	// NodeName is the node's configured node_name, when it announces one.
	NodeName string `json:"node_name,omitempty"`
	Addr     string `json:"gossip_addr,omitempty"`
	Status   string `json:"status"`
	Role     string `json:"role"` // leader, voter, non-voter or none
	Region   string `json:"region,omitempty"`
	Version  string `json:"version,omitempty"`
	RaftAddr string `json:"raft_addr,omitempty"`
}

// MemberList is the body of GET /v1/members.
type MemberList struct {
	Members []MemberInfo `json:"members"`
}

func (a *api) members(w http.ResponseWriter, _ *http.Request) error {
	a.writeJSON(w, http.StatusOK, MemberList{Members: a.memberList()})
	return nil
}

func (a *api) memberList() []MemberInfo {
	if a.cfg.Members != nil {
		return a.cfg.Members()
	}
	st := a.cfg.Registry.Status()
	role := "voter"
	if st.RaftState == "Leader" {
		role = "leader"
	}
	return []MemberInfo{{Name: st.NodeID, NodeName: a.cfg.NodeName, Status: "alive", Role: role, Version: a.cfg.Version, RaftAddr: a.cfg.RaftAddr}}
}

// Error codes of DELETE /v1/members/{name}.
const (
	// CodeMemberNotFound (404): no member, in gossip or Raft, has the name.
	CodeMemberNotFound = "member_not_found"
	// CodeMemberAlive (409): the member is alive or leaving; force-leave
	// is for members that are gone.
	CodeMemberAlive = "member_alive"
	// CodeLastVoter (409): the member is the cluster's only voter.
	CodeLastVoter = "last_voter"
)

// forceLeave answers DELETE /v1/members/{name}: a member that is gone for
// good leaves the Raft configuration and the members list. Any node takes
// it; the Raft change goes to the leader.
func (a *api) forceLeave(w http.ResponseWriter, r *http.Request) error {
	name := memberID(a.memberList(), r.PathValue("name"))
	var res ForceLeaveResult
	var err error
	if a.cfg.ForceLeave != nil {
		res, err = a.cfg.ForceLeave(r.Context(), name)
	} else {
		err = fmt.Errorf("no member named %q: %w", name, ErrMemberNotFound)
		for _, m := range a.memberList() {
			switch {
			case m.Name != name:
			case m.Status == string(StatusAlive) || m.Status == string(StatusLeaving):
				err = &MemberAliveError{Member: Member{Name: m.Name, Addr: m.Addr, Status: MemberStatus(m.Status)}}
			default:
				return apiErrorf(http.StatusNotImplemented, "not_enabled", "this node's admin API cannot remove members (it runs without the cluster agent's force-leave)")
			}
		}
	}
	var alive *MemberAliveError
	switch {
	case err == nil:
		a.writeJSON(w, http.StatusOK, res)
		return nil
	case errors.As(err, &alive):
		return apiErrorf(http.StatusConflict, CodeMemberAlive, "%v", err)
	case errors.Is(err, ErrMemberNotFound):
		return apiErrorf(http.StatusNotFound, CodeMemberNotFound, "%v; `gojinn-node members` (GET /v1/members) lists the members by name (the NODE column)", err)
	case errors.Is(err, ErrLastVoter):
		return apiErrorf(http.StatusConflict, CodeLastVoter, "%v", err)
	}
	return err
}

// memberID returns the node ID that name means: name itself when a
// member has that ID, else the ID of the one member whose node_name
// (the NAME column of `gojinn-node members`) it is; otherwise name.
func memberID(members []MemberInfo, name string) string {
	id, n := "", 0
	for _, m := range members {
		if m.Name == name {
			return name
		}
		if m.NodeName == name {
			id, n = m.Name, n+1
		}
	}
	if n == 1 {
		return id
	}
	return name
}

// errorsAsMaxBytes reports whether err comes from http.MaxBytesReader.
func errorsAsMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
