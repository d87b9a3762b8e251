package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// pathName returns the validated {name} of the request path.
func pathName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := storage.ValidateName(name); err != nil {
		return "", apiErrorf(http.StatusBadRequest, CodeInvalidName, "%v", err)
	}
	return name, nil
}

// deploy answers POST /v1/functions/{name}: validate, check, propose, wait.
func (a *api) deploy(w http.ResponseWriter, r *http.Request) error {
	name, err := pathName(r)
	if err != nil {
		return err
	}
	var req DeployRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	spec := req.Spec
	if err := validSHA256(spec.SHA256); err != nil {
		return err
	}
	switch {
	case spec.Size <= 0:
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "size %d: send the module's length in bytes", spec.Size)
	case spec.Size > a.cfg.MaxModuleBytes:
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeModuleTooLarge,
			"the module is %d bytes; this node accepts modules up to %d bytes", spec.Size, a.cfg.MaxModuleBytes)
	}
	// The store validates again when it proposes; checking here first
	// answers a typo in milliseconds instead of after a compile, and
	// with 400 `invalid`, not 422 `check_failed`, for the edge's and the
	// runtime's rules too.
	if err := validateDeploySpec(name, spec); err != nil {
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	wait, err := a.waitBound(req.Wait, req.WaitTimeout)
	if err != nil {
		return err
	}
	if !a.cfg.Blobs.Has(spec.SHA256) {
		return apiErrorf(http.StatusConflict, CodeBlobMissing,
			"module %s is not stored on this node; upload the module first with PUT /v1/blobs/%s", spec.SHA256, spec.SHA256)
	}
	if a.cfg.Check != nil {
		if err := a.cfg.Check(r.Context(), name, spec); err != nil {
			if r.Context().Err() != nil {
				return err
			}
			if errors.Is(err, runtime.ErrEngineClosed) {
				// The node is shutting down: nothing is wrong with the
				// deploy, another node (or this one restarted) takes it.
				ae := apiErrorf(http.StatusServiceUnavailable, CodeUnavailable, "this node is shutting down and checks no more deploys; nothing was deployed: send it to another node, or retry once this one is back")
				ae.RetryAfter = retryAfter
				return ae
			}
			if diskFull(err) {
				return toAPIError(fmt.Errorf("deploy of %q not checked, nothing was deployed: %w", name, err))
			}
			return apiErrorf(http.StatusUnprocessableEntity, CodeCheckFailed, "deploy of %q rejected, nothing was deployed: %v", name, err)
		}
	}
	v, err := a.cfg.Registry.Deploy(r.Context(), name, spec)
	if errors.Is(err, storage.ErrBlobNotFound) {
		return apiErrorf(http.StatusConflict, CodeBlobMissing,
			"%v; upload the module first with PUT /v1/blobs/%s", err, spec.SHA256)
	}
	if err != nil {
		return err
	}
	a.log.Info("function deployed", "function", name, "version", v.Version, "sha256", v.SHA256, "size", v.Size)
	if err := a.waitReady(r.Context(), "deploy", name, v.Version, wait); err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/functions/"+url.PathEscape(name))
	a.writeJSON(w, http.StatusCreated, redactVersion(v))
	return nil
}

// rollback answers POST /v1/functions/{name}/rollback.
func (a *api) rollback(w http.ResponseWriter, r *http.Request) error {
	name, err := pathName(r)
	if err != nil {
		return err
	}
	var req RollbackRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Version < 0 {
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "version %d: send a version number from GET /v1/functions/%s/versions, or 0 for the previous one", req.Version, name)
	}
	wait, err := a.waitBound(req.Wait, req.WaitTimeout)
	if err != nil {
		return err
	}
	v, err := a.cfg.Registry.Rollback(r.Context(), name, req.Version)
	if errors.Is(err, storage.ErrVersionNotFound) {
		return versionNotFound(name, err)
	}
	if err != nil {
		return err
	}
	a.log.Info("function rolled back", "function", name, "version", v.Version)
	if err := a.waitReady(r.Context(), "rollback", name, v.Version, wait); err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, redactVersion(v))
	return nil
}

// waitBound returns how long to wait for readiness: 0 means do not wait.
func (a *api) waitBound(wait *bool, d storage.Duration) (time.Duration, error) {
	if (wait != nil && !*wait) || a.cfg.WaitReady == nil {
		return 0, nil
	}
	switch t := time.Duration(d); {
	case t < 0 || t > MaxWaitTimeout || t > 0 && t < MinWaitTimeout:
		return 0, apiErrorf(http.StatusBadRequest, CodeInvalid, "wait_timeout %v: use a duration from %v to %v (or leave it out for the default)", t, MinWaitTimeout, MaxWaitTimeout)
	case t > 0:
		return t, nil
	}
	return a.cfg.WaitTimeout, nil
}

// waitReady waits up to d for name at version to be served: on this node,
// or on every live member of a cluster (APIConfig.WaitReady decides, and
// its error names the nodes). It stops early when this node's registry
// shows that a later write overtook version (watchOvertaken): version
// will then never be served (409 superseded). The version is committed
// either way; the error says so. op names the request ("deploy").
func (a *api) waitReady(ctx context.Context, op, name string, version int64, d time.Duration) error {
	if d == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// The watcher cancels the wait with a *SupersededError as its cause:
	// APIConfig.WaitReady may be a cluster-wide wait that polls peers and
	// only learns of an overtaking write by timing out.
	sctx, stop := context.WithCancelCause(wctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		a.watchOvertaken(sctx, stop, name, version)
	}()
	err := a.cfg.WaitReady(sctx, name, version)
	stop(nil)
	<-watched
	var sup *SupersededError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return err // the client went away
	case errors.As(err, &sup), errors.As(context.Cause(sctx), &sup):
		return supersededAnswer(op, sup)
	case errors.Is(err, context.DeadlineExceeded):
		return apiErrorf(http.StatusGatewayTimeout, CodeWaitTimeout,
			"version %d of %q is committed, but it was not served within %v: %v; it may still become ready: check GET /v1/functions/%s, or deploy without waiting",
			version, name, d, err, name)
	default:
		return apiErrorf(http.StatusInternalServerError, CodeNotReady,
			"version %d of %q is committed, but it cannot be served: %v; roll back with POST /v1/functions/%s/rollback",
			version, name, err, name)
	}
}

// supersededAnswer is the 409 for a wait of op that sup overtook.
func supersededAnswer(op string, sup *SupersededError) *APIError {
	name, version := sup.Name, sup.Version
	if sup.Removed {
		again := ""
		if sup.Active != 0 {
			again = fmt.Sprintf(" (and deployed again since, as version %d)", sup.Active)
		}
		return apiErrorf(http.StatusConflict, CodeSuperseded,
			"version %d of %q is committed, but the function was removed while the %s waited%s (DELETE /v1/functions/%s or `gojinn-node functions rm`), so version %d will not serve; deploy %q again if it should serve",
			version, name, op, again, name, version, name)
	}
	return apiErrorf(http.StatusConflict, CodeSuperseded,
		"version %d of %q is committed, but version %d became active before it was served (a later deploy or rollback), so version %d will not serve; check GET /v1/functions/%s, and deploy or roll back again if version %d should serve",
		version, name, sup.Active, version, name, version)
}

// overtakenRecheck is how often a deploy's wait looks at this node's
// registry without a change notification: to retry a catch-up that
// failed (no leader), and so that a missed notification costs a second,
// never the whole wait.
const overtakenRecheck = time.Second

// watchOvertaken cancels ctx (through stop) with a *SupersededError once
// this node's registry shows that a later write overtook version of name
// (overtakeCheck, as Reconciler.WaitReady decides it). It looks after
// every registry change and every overtakenRecheck, until ctx ends.
func (a *api) watchOvertaken(ctx context.Context, stop context.CancelCauseFunc, name string, version int64) {
	// Subscribed before the first look: a change after it is notified,
	// one before it is in what the first look reads.
	changed, unsubscribe := a.cfg.Registry.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(overtakenRecheck)
	defer tick.Stop()
	over := newOvertakeCheck(a.cfg.Registry, a.cfg.Registry.Function, name, version)
	for {
		sup, err := over.check(ctx)
		if sup != nil {
			stop(sup)
			return
		}
		if err != nil && ctx.Err() == nil {
			a.log.Debug("a readiness wait could not catch up the registry; retrying", "function", name, "version", version, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// removeWait bounds how long a removal waits for this node to stop
// routing the function; the removal stands either way.
const removeWait = 10 * time.Second

// removeFunction answers DELETE /v1/functions/{name}.
func (a *api) removeFunction(w http.ResponseWriter, r *http.Request) error {
	name, err := pathName(r)
	if err != nil {
		return err
	}
	if err := a.cfg.Registry.Remove(r.Context(), name); err != nil {
		return err
	}
	if a.cfg.WaitRemoved != nil {
		// Committed; this node stops routing it a moment later.
		ctx, cancel := context.WithTimeout(r.Context(), removeWait)
		err := a.cfg.WaitRemoved(ctx, name)
		cancel()
		if err != nil {
			a.log.Warn("function removed, but this node still routes it", "function", name, "err", err)
		}
	}
	a.log.Info("function removed", "function", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listFunctions answers GET /v1/functions.
func (a *api) listFunctions(w http.ResponseWriter, _ *http.Request) error {
	fs := a.cfg.Registry.Functions()
	list := FunctionList{Functions: make([]FunctionSummary, 0, len(fs))}
	for _, f := range fs {
		list.Functions = append(list.Functions, summarize(f))
	}
	a.writeJSON(w, http.StatusOK, list)
	return nil
}

// function returns the registered function of the request path.
func (a *api) function(r *http.Request) (storage.Function, error) {
	name, err := pathName(r)
	if err != nil {
		return storage.Function{}, err
	}
	f, ok := a.cfg.Registry.Function(name)
	if !ok {
		return storage.Function{}, apiErrorf(http.StatusNotFound, CodeFunctionNotFound,
			"no function %q is deployed; list functions with GET /v1/functions (`gojinn-node functions`)", name)
	}
	return f, nil
}

// showFunction answers GET /v1/functions/{name}.
func (a *api) showFunction(w http.ResponseWriter, r *http.Request) error {
	f, err := a.function(r)
	if err != nil {
		return err
	}
	if f.Versions == nil {
		f.Versions = []storage.Version{}
	}
	a.writeJSON(w, http.StatusOK, redactFunction(f))
	return nil
}

// versions answers GET /v1/functions/{name}/versions.
func (a *api) versions(w http.ResponseWriter, r *http.Request) error {
	f, err := a.function(r)
	if err != nil {
		return err
	}
	list := VersionList{Name: f.Name, Active: f.Active, Versions: make([]VersionInfo, 0, len(f.Versions))}
	for _, v := range f.Versions {
		list.Versions = append(list.Versions, VersionInfo{Version: redactVersion(v), Active: v.Version == f.Active})
	}
	a.writeJSON(w, http.StatusOK, list)
	return nil
}
