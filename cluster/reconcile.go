package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

// Loader is what the reconciler needs of the runtime; *runtime.Engine
// satisfies it.
type Loader interface {
	Load(ctx context.Context, spec runtime.FunctionSpec) (*runtime.Function, error)
	Unload(ctx context.Context, name string) error
	Check(ctx context.Context, spec runtime.FunctionSpec) error
}

// RegistryView is the replicated registry as the reconciler reads it.
type RegistryView interface {
	State() *storage.State
	Subscribe() (<-chan struct{}, func())
}

// BlobReader returns verified module bytes by sha256. *storage.Blobs
// reads the local store; *PeerBlobs also fetches a module the node lacks
// from a peer, which can be slow or silent: the read stops when ctx ends,
// so stopping the reconciler, or a deploy's client going away, does not
// wait for it.
type BlobReader interface {
	ReadBlob(ctx context.Context, sha string) ([]byte, error)
}

// ErrNotServable means a version could not be loaded: on this node
// (Reconciler.WaitReady) or on the members the error names
// (Agent.WaitServable).
var ErrNotServable = errors.New("version is not servable")

// Reconciler makes this node serve what the registry says: it loads every
// function's active version into the runtime (compiling it before any
// route points at it), unloads removed functions and swaps the edge's
// route table. It runs one pass at a time on its own goroutine (Run).
type Reconciler struct {
	src    RegistryView
	blobs  BlobReader
	loader Loader
	router *edge.Router
	log    *slog.Logger

	mu      sync.Mutex
	loaded  map[string]loadedFn // what the runtime has loaded
	served  map[string]int64    // versions the installed route table reaches
	failed  map[string]failure  // versions that did not load
	applied uint64              // registry index of the last finished pass
	// allLoaded is set by the first finished pass after catching up: the
	// node has served every function of the cluster's registry once.
	// lagSince is when Ready first saw the passes behind the registry
	// again (zero while they are not).
	allLoaded bool
	lagSince  time.Time
	routed    uint64        // registry index of the last route table swapped in
	changed   chan struct{} // closed and replaced after every route swap
	firstPass chan struct{} // closed when the first pass has finished
	firstOnce sync.Once

	// caughtUp is set once the registry has applied every command the
	// cluster had committed when Run started (a read barrier through the
	// leader). Before that, a restarted node's registry holds only its
	// last snapshot (Raft replays the log after it once it hears the
	// commit index): Ready says not ready, and unknown routes get 503
	// instead of 404 (edge.RouteTable.CatchingUp).
	caughtUp atomic.Bool
}

type loadedFn struct {
	version int64
	routes  []storage.Route
}

type failure struct {
	version int64
	err     error
	retryAt time.Time // a transient failure (blob not fetched yet) is retried then
}

// retryInterval is how often Run retries versions that failed for a
// reason that may pass (a module blob no peer could send yet).
const retryInterval = 2 * time.Second

// NewReconciler returns a reconciler; call Sync once, then Run.
func NewReconciler(src RegistryView, blobs BlobReader, loader Loader, router *edge.Router, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.Default()
	}
	return &Reconciler{
		src: src, blobs: blobs, loader: loader, router: router, log: log,
		loaded: map[string]loadedFn{}, failed: map[string]failure{},
		changed: make(chan struct{}), firstPass: make(chan struct{}),
	}
}

// FirstPass is closed once the first reconciliation pass has finished:
// every function the registry held then is loaded, or has failed to. A
// node opens its listeners then, or after a bound if compiling takes
// long (a cold compilation cache), rather than stay unreachable.
func (r *Reconciler) FirstPass() <-chan struct{} { return r.firstPass }

// Run reconciles after every registry change until ctx ends. It first
// catches the registry up with the cluster (catchUpLoop) on a goroutine
// of its own, which it waits for.
func (r *Reconciler) Run(ctx context.Context) {
	ch, cancel := r.src.Subscribe()
	defer cancel()
	tick := time.NewTicker(retryInterval)
	defer tick.Stop()
	caughtUp := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.catchUpLoop(ctx, caughtUp)
	}()
	defer func() { <-done }()
	for {
		r.Sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		case <-caughtUp:
			caughtUp = nil // once: the next pass swaps in a table without the catching-up mark
		}
	}
}

// catchUpRetry is how long catchUpLoop waits after its first failed
// attempt (no leader yet, not a member yet, no quorum); the wait doubles
// up to catchUpRetryMax.
const (
	catchUpRetry    = 50 * time.Millisecond
	catchUpRetryMax = time.Second
)

// catchUpLoop sets caughtUp once the registry has caught up with the
// cluster, retrying until it does or ctx ends, and closes done then. A
// registry without catch-up (a bare storage.Registry) is caught up at
// once.
func (r *Reconciler) catchUpLoop(ctx context.Context, done chan<- struct{}) {
	c, ok := r.src.(registryCatchUp)
	for wait := catchUpRetry; ok; wait = min(2*wait, catchUpRetryMax) {
		err := c.catchUp(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Debug("catching up with the cluster's log before serving what it holds; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	r.caughtUp.Store(true)
	close(done)
}

// Sync runs one reconciliation pass against the registry's current state.
func (r *Reconciler) Sync(ctx context.Context) {
	st := r.src.State()
	fns := st.Functions()
	want := make(map[string]storage.Version, len(fns))
	for _, f := range fns {
		if v, ok := f.ActiveVersion(); ok {
			want[f.Name] = v
		}
	}
	// 1. Routes first for what went away (404 at once) and what is new
	// (503 "deploying" until loaded); changed functions keep serving their
	// loaded version and routes meanwhile.
	r.swapRoutes(want, st.Index(), false)
	// 2. Unload removed functions.
	r.mu.Lock()
	var gone []string
	for name := range r.loaded {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
		}
	}
	// A function removed while its version failed to load was never
	// loaded: its failure goes here, or the map grows with every such
	// name.
	for name := range r.failed {
		if _, ok := want[name]; !ok {
			delete(r.failed, name)
		}
	}
	r.mu.Unlock()
	for _, name := range gone {
		if err := r.loader.Unload(ctx, name); err != nil && !errors.Is(err, runtime.ErrUnknownFunction) {
			r.log.Warn("unloading a removed function", "function", name, "err", err)
		}
		r.mu.Lock()
		delete(r.loaded, name)
		delete(r.failed, name)
		r.mu.Unlock()
	}
	// 3. Load new versions, in name order so logs read predictably.
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := want[name]
		r.mu.Lock()
		cur, isLoaded := r.loaded[name]
		fail, isFailed := r.failed[name]
		r.mu.Unlock()
		if isLoaded && cur.version == v.Version {
			continue
		}
		if isFailed && fail.version == v.Version && (fail.retryAt.IsZero() || time.Now().Before(fail.retryAt)) {
			continue
		}
		if ctx.Err() != nil {
			return // the node is stopping: the rest of the pass is moot
		}
		start := time.Now()
		err := r.load(ctx, name, v)
		if errors.Is(err, runtime.ErrEngineClosed) || errors.Is(err, context.Canceled) && ctx.Err() != nil {
			// The node is shutting down (its edge's grace ended, or the
			// engine is closing): nothing is wrong with the version, and
			// nothing will serve it here any more.
			r.log.Debug("function version not loaded: the node is shutting down", "function", name, "version", v.Version)
			continue
		}
		r.mu.Lock()
		if err != nil {
			f := failure{version: v.Version, err: err}
			// Failures that may pass: a module not fetched yet, or moved
			// aside as corrupt (ErrHashMismatch: a peer or a redeploy
			// brings it back), no leader, a full disk.
			if errors.Is(err, storage.ErrBlobNotFound) || errors.Is(err, storage.ErrHashMismatch) || errors.Is(err, ErrUnavailable) || errors.Is(err, runtime.ErrCompileStorage) {
				f.retryAt = time.Now().Add(retryInterval)
			}
			r.failed[name] = f
			r.log.Error("function version did not load; the previous version, if any, keeps serving",
				"function", name, "version", v.Version, "err", err)
		} else {
			delete(r.failed, name)
			r.loaded[name] = loadedFn{version: v.Version, routes: v.Routes}
			r.log.Info("function version serving", "function", name, "version", v.Version, "load_time", time.Since(start))
		}
		r.mu.Unlock()
	}
	// 4. Final routes: every loaded version's own.
	r.swapRoutes(want, st.Index(), true)
	r.firstOnce.Do(func() { close(r.firstPass) })
}

func (r *Reconciler) load(ctx context.Context, name string, v storage.Version) error {
	module, err := r.blobs.ReadBlob(ctx, v.SHA256)
	if err != nil {
		return fmt.Errorf("read module %s: %w", v.SHA256, err)
	}
	// Compiled on another node already? Then only load its code.
	r.fetchArtifacts(ctx, name, v)
	_, err = r.loader.Load(ctx, RuntimeSpec(name, v, module))
	return err
}

// swapRoutes builds and installs the route table. A function that is
// loaded serves its loaded version's routes; one that is not yet loaded
// shows the active version's routes (so requests get 503 "deploying").
// When final is set, the pass is over: waiters are woken.
func (r *Reconciler) swapRoutes(want map[string]storage.Version, index uint64, final bool) {
	r.mu.Lock()
	routes := make(map[string][]storage.Route, len(want))
	served := make(map[string]int64, len(want))
	for name, v := range want {
		if cur, ok := r.loaded[name]; ok {
			routes[name] = cur.routes
			served[name] = cur.version
		} else {
			routes[name] = v.Routes
		}
	}
	r.mu.Unlock()
	table, skipped := buildTable(routes)
	for name, err := range skipped {
		r.log.Error("function routes skipped: they conflict with another function's", "function", name, "err", err)
	}
	if !r.caughtUp.Load() {
		table = table.CatchingUp()
	}
	r.router.Swap(table)
	// Only now do requests reach these versions through their routes:
	// WaitReady (deploy --wait) answers from served, not from loaded.
	r.mu.Lock()
	r.served = served
	r.routed = index
	if final {
		r.applied = index
		if r.caughtUp.Load() {
			r.allLoaded = true
		}
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// buildTable adds functions in name order and skips any whose routes
// conflict with those already added, so one bad entry cannot take every
// route down.
func buildTable(routes map[string][]storage.Route) (*edge.RouteTable, map[string]error) {
	names := make([]string, 0, len(routes))
	for name := range routes {
		names = append(names, name)
	}
	sort.Strings(names)
	var all []edge.Route
	for _, name := range names {
		all = append(all, EdgeRoutes(name, routes[name])...)
	}
	if t, err := edge.NewRouteTable(all); err == nil {
		return t, nil
	}
	skipped := map[string]error{}
	all = all[:0]
	for _, name := range names {
		next := append(all[:len(all):len(all)], EdgeRoutes(name, routes[name])...)
		if _, err := edge.NewRouteTable(next); err != nil {
			skipped[name] = err
			continue
		}
		all = next
	}
	t, _ := edge.NewRouteTable(all)
	return t, skipped
}

// CheckDeploy is the admin API's pre-deploy check: the routes are valid
// and conflict with no other function's active routes in this node's
// state (CheckRoutes), and the module compiles and suits the mode. It
// changes nothing. It is fast feedback only: a concurrent deploy may
// commit first, and then the state machine refuses this one
// (storage.ErrRouteConflict).
func (r *Reconciler) CheckDeploy(ctx context.Context, name string, spec storage.Spec) error {
	if err := CheckRoutes(name, spec.Routes, r.src.State().ActiveRoutes(name)); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	module, err := r.blobs.ReadBlob(ctx, spec.SHA256)
	if err != nil {
		return fmt.Errorf("module: %w", err)
	}
	return r.loader.Check(ctx, RuntimeSpec(name, storage.Version{Spec: spec}, module))
}

// WaitReady blocks until this node serves name at version, the version
// failed to load here (ErrNotServable with the reason), a later write
// overtook it (a *SupersededError: another version of name became active
// after it, or name was removed; version will never be served), or ctx
// ends. version must be committed (Store.Deploy or Rollback returned it).
//
// Whether it was overtaken is decided as the admin API's watch decides it
// (overtakeCheck): a different active version, or no function, is only
// trusted once the registry has caught up with every committed command (a
// read barrier, once per wait), because before that it may be this node
// not having applied version yet, such as a rollback to an older version
// committed through another node.
func (r *Reconciler) WaitReady(ctx context.Context, name string, version int64) error {
	over := newOvertakeCheck(r.src, func(name string) (storage.Function, bool) {
		return r.src.State().Function(name)
	}, name, version)
	for {
		r.mu.Lock()
		cur, isServed := r.served[name]
		fail, isFailed := r.failed[name]
		changed := r.changed
		r.mu.Unlock()
		switch {
		case isServed && cur == version:
			return nil
		case isFailed && fail.version == version && fail.retryAt.IsZero():
			return fmt.Errorf("%w on this node: %s version %d: %w", ErrNotServable, name, version, fail.err)
		}
		// Every registry change ends in a route swap that closes changed,
		// so a later write is seen at most one pass after it commits.
		var retry <-chan time.Time
		sup, err := over.check(ctx)
		if sup != nil {
			return sup
		}
		if err != nil {
			r.log.Debug("registry catch-up for a readiness wait failed; retrying", "err", err)
			retry = time.After(retryInterval)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s version %d to be served: %w", name, version, context.Cause(ctx))
		case <-changed:
		case <-retry:
		}
	}
}

// WaitRemoved blocks until this node routes nothing to name: its copy of
// the registry has no active version of name and a route table built from
// that copy is in place. A removal is committed before the API answers,
// but this node applies it and swaps its routes a moment later; waiting
// makes `functions rm` mean "gone" on the node that was asked.
func (r *Reconciler) WaitRemoved(ctx context.Context, name string) error {
	for {
		st := r.src.State()
		r.mu.Lock()
		routed, changed := r.routed, r.changed
		r.mu.Unlock()
		f, ok := st.Function(name)
		if ok {
			_, ok = f.ActiveVersion()
		}
		if !ok && routed >= st.Index() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to stop being routed: %w", name, context.Cause(ctx))
		case <-changed:
		}
	}
}

// Failing returns how many functions' active versions this node could not
// load, for the gojinn_functions_failed gauge: each is logged, and
// retried while the cause may pass.
func (r *Reconciler) Failing() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failed)
}

// VersionState says whether this node serves name at version.
func (r *Reconciler) VersionState(name string, version int64) ReadyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.served[name]; ok && cur == version {
		return ReadyState{State: "ready"}
	}
	if f, ok := r.failed[name]; ok && f.version == version {
		if !f.retryAt.IsZero() {
			return ReadyState{State: "pending", Reason: f.err.Error()}
		}
		return ReadyState{State: "failed", Reason: f.err.Error()}
	}
	return ReadyState{State: "pending"}
}

// Ready reports whether the last pass covered the registry's current
// state, with a reason when not.
func (r *Reconciler) Ready() (bool, string) {
	if !r.caughtUp.Load() {
		return false, "catching up with the cluster's log: this node's registry may be behind the leader's (no leader reached yet, or the log is still replaying)"
	}
	idx := r.src.State().Index()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied >= idx {
		r.lagSince = time.Time{}
		return true, ""
	}
	now := time.Now()
	if r.lagSince.IsZero() {
		r.lagSince = now
	}
	// Once every function was loaded, a pass under way (a deploy being
	// compiled, on every node at once) leaves the node ready: the
	// versions it served keep serving until the new ones are in. Only a
	// pass that stays behind for readyLagGrace makes it unready.
	if behind := now.Sub(r.lagSince); !r.allLoaded || behind > readyLagGrace {
		return false, fmt.Sprintf("loading functions: registry index %d, served index %d (behind for %s)", idx, r.applied, behind.Round(time.Millisecond))
	}
	return true, ""
}

// readyLagGrace is how long a node that loaded every function stays
// ready while its reconciler is behind the registry: longer than a
// deploy's compile, shorter than an operator would leave a node serving
// stale versions unnoticed.
const readyLagGrace = 30 * time.Second

// RuntimeSpec turns a registry version into the runtime's function spec.
func RuntimeSpec(name string, v storage.Version, module []byte) runtime.FunctionSpec {
	l := v.Limits
	return runtime.FunctionSpec{
		Name:    name,
		Version: strconv.FormatInt(v.Version, 10),
		Module:  module,
		Mode:    runtime.Mode(v.Mode),
		Reset:   runtime.Reset(v.Reset),
		Env:     v.Env,
		Limits: runtime.Limits{
			MemoryBytes:     l.MemoryBytes,
			Timeout:         time.Duration(l.Timeout),
			CPUTime:         time.Duration(l.CPUTime),
			MaxRequestBody:  l.MaxRequestBody,
			MaxResponseBody: l.MaxResponseBody,
			MaxInstances:    l.MaxInstances,
			QueueTimeout:    time.Duration(l.QueueTimeout),
		},
	}
}

// EdgeRoutes turns a function's registry routes into edge routes.
func EdgeRoutes(name string, routes []storage.Route) []edge.Route {
	out := make([]edge.Route, len(routes))
	for i, rt := range routes {
		out[i] = edge.Route{Host: rt.Host, Path: rt.Path, Methods: rt.Methods, Function: name}
	}
	return out
}
