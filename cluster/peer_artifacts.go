package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// Compiled artifacts travel between nodes so that a deploy is compiled
// once, by the node that took it (CheckDeploy compiles before the
// commit), and the others load the machine code from their disk caches
// (about 0.1 s against 1.3-1.6 s of CPU for a 3 MB Go module). They are
// native code the receiving node executes, so they come only over the
// peer API, from peers authenticated by the cluster CA: the same peers
// that may already replace any function through the Raft log. See
// docs/security-model.md, "Between nodes".

// ArtifactExporter is what the peer API needs of the runtime to hand out
// compiled artifacts; *runtime.Engine satisfies it.
type ArtifactExporter interface {
	Artifacts(hash [32]byte) (*runtime.Artifacts, error)
}

// ArtifactImporter is what the reconciler needs of the runtime to use a
// peer's compiled artifacts instead of compiling; *runtime.Engine
// satisfies it.
type ArtifactImporter interface {
	HasArtifacts(hash [32]byte) bool
	ImportArtifacts(hash [32]byte, a *runtime.Artifacts) error
	MaxArtifactBytes() int64
}

// ArtifactSource fetches a module's compiled artifacts from somewhere
// (PeerBlobs: the cluster's peers) and hands them to use, returning where
// they came from. A reconciler whose BlobReader is also an ArtifactSource
// and whose Loader is an ArtifactImporter tries it before compiling.
type ArtifactSource interface {
	FetchArtifacts(ctx context.Context, sha string, limit int64, use func(*runtime.Artifacts) error) (from string, err error)
}

// artifactTimeout bounds fetching one peer's artifacts when
// PeerBlobs.ArtifactTimeout is zero, and twice that all peers': a 3 MB
// Go module's are ~16 MB (the machine code is ~4x the module), a
// fraction of a second on a LAN; past that, compiling is about as quick,
// and a hung peer must not hold the deploy up for long.
const artifactTimeout = 5 * time.Second

// artifacts serves GET /peer/v1/artifacts/{sha}: the wire form of
// runtime.Artifacts, or 404 when this node has not compiled the module.
func (p *peerAPI) artifacts(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	if err := storage.ValidateSHA256(sha); err != nil {
		peerError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	get := p.cfg.Artifacts
	if get == nil && p.cfg.Rec != nil {
		get = p.cfg.Rec.Artifacts
	}
	if get == nil {
		peerError(w, http.StatusNotFound, "artifacts_not_found", "this node has no runtime")
		return
	}
	a, err := get(sha)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, runtime.ErrNoArtifacts) {
			status = http.StatusNotFound
		}
		peerError(w, status, "artifacts_not_found", err.Error())
		return
	}
	defer func() { _ = a.Close() }()
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := runtime.WriteArtifacts(w, a); err != nil {
		p.log.Warn("sending compiled artifacts to a peer", "sha256", sha, "err", err)
	}
}

// FetchArtifacts asks the node at base for the compiled artifacts of the
// module sha and hands them, streamed from the response, to use. Sets
// larger than limit bytes are refused.
func (c *PeerClient) FetchArtifacts(ctx context.Context, base, sha string, limit int64, use func(*runtime.Artifacts) error) error {
	resp, err := c.do(ctx, "GET", base+"/peer/v1/artifacts/"+sha, nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	a, err := runtime.ReadArtifacts(resp.Body, limit)
	if err != nil {
		return fmt.Errorf("artifacts of %s from %s: %w", sha, base, err)
	}
	if err := use(a); err != nil {
		return fmt.Errorf("artifacts of %s from %s: %w", sha, base, err)
	}
	return nil
}

// FetchArtifacts implements ArtifactSource: it asks every other server in
// turn (the leader first), each for at most ArtifactTimeout and all for at most twice that,
// and stops at the first whose artifacts use accepts. A peer that has not compiled the module answers
// 404 at once; the node that took the deploy has them from CheckDeploy.
func (p *PeerBlobs) FetchArtifacts(ctx context.Context, sha string, limit int64, use func(*runtime.Artifacts) error) (string, error) {
	timeout := p.ArtifactTimeout
	if timeout == 0 {
		timeout = artifactTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	id, err := p.askPeers(ctx, timeout, func(ctx context.Context, url string) error {
		return p.Client.FetchArtifacts(ctx, url, sha, limit, use)
	})
	if err == nil {
		return id, nil
	}
	return "", fmt.Errorf("no peer sent usable compiled artifacts for %s: %w", sha, err)
}

// Artifacts returns the compiled artifacts this node's runtime holds for
// the module sha (runtime.ErrNoArtifacts when it has none, or when the
// Loader cannot export them), for the peer API.
func (r *Reconciler) Artifacts(sha string) (*runtime.Artifacts, error) {
	exp, ok := r.loader.(ArtifactExporter)
	if !ok {
		return nil, runtime.ErrNoArtifacts
	}
	hash, err := parseSHA256(sha)
	if err != nil {
		return nil, err
	}
	return exp.Artifacts(hash)
}

// artifacts serves the peer API's artifacts from the reconciler, once
// the node has one (SetReconciler).
func (a *Agent) artifacts(sha string) (*runtime.Artifacts, error) {
	if rec := a.rec.Load(); rec != nil {
		return rec.Artifacts(sha)
	}
	return nil, runtime.ErrNoArtifacts
}

// fetchArtifacts fills the runtime's disk caches with a peer's compiled
// artifacts for v's module, so that the Load that follows does not
// compile. Best effort: when the runtime has them already, no peer has
// them, or they do not suit this node, the Load compiles as before.
func (r *Reconciler) fetchArtifacts(ctx context.Context, name string, v storage.Version) {
	src, ok := r.blobs.(ArtifactSource)
	imp, ok2 := r.loader.(ArtifactImporter)
	if !ok || !ok2 {
		return
	}
	hash, err := parseSHA256(v.SHA256)
	if err != nil || imp.HasArtifacts(hash) {
		return
	}
	start := time.Now()
	from, err := src.FetchArtifacts(ctx, v.SHA256, imp.MaxArtifactBytes(), func(a *runtime.Artifacts) error {
		return imp.ImportArtifacts(hash, a)
	})
	if err != nil {
		r.log.Debug("compiled artifacts not fetched; compiling here", "function", name, "version", v.Version, "err", err)
		return
	}
	r.log.Debug("compiled artifacts fetched", "function", name, "version", v.Version, "from", from, "time", time.Since(start))
}

func parseSHA256(sha string) ([32]byte, error) {
	var hash [32]byte
	if err := storage.ValidateSHA256(sha); err != nil {
		return hash, err
	}
	_, err := hex.Decode(hash[:], []byte(sha))
	return hash, err
}
