package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/storage"
)

type reconcileEnv struct {
	t     *testing.T
	reg   *storage.Registry
	blobs *storage.Blobs
	rec   *cluster.Reconciler
	rt    *edge.Router
	index uint64
}

func newReconcileEnv(t *testing.T) *reconcileEnv { return newReconcileEnvWith(t, nil) }

// newReconcileEnvWith is newReconcileEnv with the engine wrapped by wrap
// (nil: not wrapped).
func newReconcileEnvWith(t *testing.T, wrap func(cluster.Loader) cluster.Loader) *reconcileEnv {
	return newReconcileEnvIn(t, t.TempDir(), wrap)
}

// newReconcileEnvIn is newReconcileEnvWith with its blob store in dir.
func newReconcileEnvIn(t *testing.T, dir string, wrap func(cluster.Loader) cluster.Loader) *reconcileEnv {
	blobs, err := storage.OpenBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var loader cluster.Loader = enginetest.Engine(t)
	if wrap != nil {
		loader = wrap(loader)
	}
	env := &reconcileEnv{t: t, reg: storage.NewRegistry(), blobs: blobs, rt: &edge.Router{}}
	env.rec = cluster.NewReconciler(env.reg, blobs, loader, env.rt, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); env.rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return env
}

func (e *reconcileEnv) put(module []byte) storage.Spec {
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	if _, err := e.blobs.Put(sha, bytes.NewReader(module), 1<<30); err != nil {
		e.t.Fatal(err)
	}
	return storage.Spec{SHA256: sha, Size: int64(len(module))}
}

func (e *reconcileEnv) apply(c storage.Command) storage.ApplyResult {
	e.t.Helper()
	c.At = time.Unix(1700000000, 0).UTC()
	b, err := storage.EncodeCommand(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.index++
	res := e.reg.ApplyCommand(e.index, b)
	if res.Err != nil {
		e.t.Fatal(res.Err)
	}
	return res
}

// deployTinyHello deploys the tiny pooled reactor as "hello" at /hello/*,
// waits until it serves, and returns its spec.
func (e *reconcileEnv) deployTinyHello() storage.Spec {
	e.t.Helper()
	hello := e.put(runtimetest.WAT(e.t, "runtime/testdata/wat/tiny-reactor.wat"))
	hello.Mode = storage.ModePooled
	hello.Routes = []storage.Route{{Path: "/hello/*"}}
	res := e.apply(storage.Command{Op: storage.OpDeploy, Name: "hello", Spec: &hello})
	if err := waitReady(e.t, e.rec, "hello", res.Version.Version); err != nil {
		e.t.Fatal(err)
	}
	return hello
}

func (e *reconcileEnv) lookup(host, path string) (edge.Match, edge.LookupStatus) {
	return e.rt.Lookup(host, path, "GET")
}

func waitReady(t *testing.T, rec *cluster.Reconciler, name string, v int64) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return rec.WaitReady(ctx, name, v)
}

// Deploys load before their routes point at them, a bad version leaves the
// previous one serving, and removal takes the routes away.
func TestReconcilerLifecycle(t *testing.T) {
	env := newReconcileEnv(t)
	env.deployTinyHello()
	if m, st := env.lookup("any.example", "/hello/x"); st != edge.RouteFound || m.Function != "hello" {
		t.Fatalf("after deploy: %v %+v", st, m)
	}
	if ok, why := env.rec.Ready(); !ok {
		t.Fatalf("not ready after the pass: %s", why)
	}

	// A version whose module does not compile never replaces the good one.
	bad := env.put([]byte("\x00asm\x01\x00\x00\x00garbage"))
	bad.Mode = storage.ModePooled
	bad.Routes = []storage.Route{{Path: "/moved/*"}}
	res2 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "hello", Spec: &bad})
	err := waitReady(t, env.rec, "hello", res2.Version.Version)
	if !errors.Is(err, cluster.ErrNotServable) {
		t.Fatalf("bad version: %v, want ErrNotServable", err)
	}
	if m, st := env.lookup("h", "/hello/x"); st != edge.RouteFound || m.Function != "hello" {
		t.Fatalf("the previous version's routes must keep serving: %v %+v", st, m)
	}
	if _, st := env.lookup("h", "/moved/x"); st != edge.RouteNotFound {
		t.Fatalf("the failed version's routes must not appear: %v", st)
	}

	// Roll back to version 1: served again, as its own version.
	res3 := env.apply(storage.Command{Op: storage.OpRollback, Name: "hello", Version: 1})
	if err := waitReady(t, env.rec, "hello", res3.Version.Version); err != nil {
		t.Fatal(err)
	}

	// WaitRemoved waits while the function is routed, and returns once
	// its routes are gone (what DELETE /v1/functions/{name} waits for).
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := env.rec.WaitRemoved(short, "hello"); err == nil {
		t.Fatal("WaitRemoved returned while hello is deployed")
	}
	env.apply(storage.Command{Op: storage.OpRemove, Name: "hello"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.rec.WaitRemoved(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, st := env.lookup("h", "/hello/x"); st != edge.RouteNotFound {
		t.Fatalf("routes of a removed function still present after WaitRemoved: %v", st)
	}
}

// A function removed while its only version failed to load leaves no
// failure behind (it was never loaded, so the unload pass missed it).
func TestReconcilerForgetsRemovedFailures(t *testing.T) {
	env := newReconcileEnv(t)
	bad := env.put([]byte("\x00asm\x01\x00\x00\x00garbage"))
	bad.Mode = storage.ModePooled
	bad.Routes = []storage.Route{{Path: "/broken/*"}}
	res := env.apply(storage.Command{Op: storage.OpDeploy, Name: "broken", Spec: &bad})
	if err := waitReady(t, env.rec, "broken", res.Version.Version); !errors.Is(err, cluster.ErrNotServable) {
		t.Fatalf("bad version: %v, want ErrNotServable", err)
	}
	if st := env.rec.VersionState("broken", res.Version.Version); st.State != "failed" {
		t.Fatalf("before the removal: %+v, want failed", st)
	}
	env.apply(storage.Command{Op: storage.OpRemove, Name: "broken"})
	deadline := time.Now().Add(10 * time.Second)
	for env.rec.VersionState("broken", res.Version.Version).State == "failed" {
		if time.Now().After(deadline) {
			t.Fatal("the failure of a removed function is still kept 10 s after the removal")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CheckDeploy rejects route conflicts with another function, invalid
// patterns and modules that do not compile, before anything is proposed.
func TestReconcilerCheckDeploy(t *testing.T) {
	env := newReconcileEnv(t)
	tiny := env.put(runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"))
	tiny.Mode = storage.ModePooled
	tiny.Routes = []storage.Route{{Host: "a.example", Path: "/x"}}
	res := env.apply(storage.Command{Op: storage.OpDeploy, Name: "first", Spec: &tiny})
	if err := waitReady(t, env.rec, "first", res.Version.Version); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := env.rec.CheckDeploy(ctx, "first", tiny); err != nil {
		t.Fatalf("redeploying the same function over its own routes: %v", err)
	}
	conflict := tiny
	if err := env.rec.CheckDeploy(ctx, "second", conflict); err == nil || !strings.Contains(err.Error(), "first") {
		t.Fatalf("conflict: %v, want an error naming the other function", err)
	}
	badRoute := tiny
	badRoute.Routes = []storage.Route{{Path: "no-slash"}}
	if err := env.rec.CheckDeploy(ctx, "second", badRoute); err == nil || !strings.Contains(err.Error(), "routes[0]") {
		t.Fatalf("bad route: %v", err)
	}
	badModule := env.put([]byte("not wasm at all"))
	if err := env.rec.CheckDeploy(ctx, "second", badModule); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Fatalf("bad module: %v, want the compiler's reason", err)
	}
}

// A wait for a version that a newer one overtook before it was served
// returns at once with a *SupersededError (the version can never be
// served), not when ctx ends.
func TestReconcilerWaitReadySuperseded(t *testing.T) {
	env := newReconcileEnv(t)
	// Version 1's module was never stored here: it stays pending (a
	// transient failure, retried), so nothing serves it.
	missing := storage.Spec{SHA256: strings.Repeat("ab", 32), Size: 10, Mode: storage.ModePooled}
	v1 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "fn", Spec: &missing})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- env.rec.WaitReady(ctx, "fn", v1.Version.Version) }()

	good := env.put(runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"))
	good.Mode = storage.ModePooled
	v2 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "fn", Spec: &good})
	err := <-done
	var sup *cluster.SupersededError
	if !errors.Is(err, cluster.ErrSuperseded) || !errors.As(err, &sup) || sup.Version != 1 || sup.Active != v2.Version.Version || ctx.Err() != nil {
		t.Fatalf("wait for the overtaken version: %v (ctx %v)", err, ctx.Err())
	}
	if err := waitReady(t, env.rec, "fn", v2.Version.Version); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(t, env.rec, "fn", v1.Version.Version); !errors.Is(err, cluster.ErrSuperseded) {
		t.Fatalf("a later wait for version 1: %v", err)
	}

	// A rollback to an older version overtakes a pending version too.
	v3 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "fn", Spec: &missing})
	go func() { done <- env.rec.WaitReady(ctx, "fn", v3.Version.Version) }()
	env.apply(storage.Command{Op: storage.OpRollback, Name: "fn", Version: v2.Version.Version})
	if err := <-done; !errors.As(err, &sup) || sup.Version != 3 || sup.Active != 2 || ctx.Err() != nil {
		t.Fatalf("wait for a version a rollback overtook: %v (ctx %v)", err, ctx.Err())
	}
}

// A wait for a version whose function is removed before it is served
// returns at once with a *SupersededError saying so, not when ctx ends;
// so does a later wait for it once the name was deployed again.
func TestReconcilerWaitReadyRemoved(t *testing.T) {
	env := newReconcileEnv(t)
	// Never stored here: version 1 stays pending, so nothing serves it.
	missing := storage.Spec{SHA256: strings.Repeat("cd", 32), Size: 10, Mode: storage.ModePooled}
	v1 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "fn", Spec: &missing})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- env.rec.WaitReady(ctx, "fn", v1.Version.Version) }()
	env.apply(storage.Command{Op: storage.OpRemove, Name: "fn"})
	err := <-done
	var sup *cluster.SupersededError
	if !errors.As(err, &sup) || !sup.Removed || sup.Version != 1 || sup.Active != 0 || ctx.Err() != nil ||
		!strings.Contains(err.Error(), "fn was removed before version 1 was served") {
		t.Fatalf("wait for a version whose function was removed: %v (ctx %v)", err, ctx.Err())
	}

	good := env.put(runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"))
	good.Mode = storage.ModePooled
	v2 := env.apply(storage.Command{Op: storage.OpDeploy, Name: "fn", Spec: &good})
	if err := waitReady(t, env.rec, "fn", v2.Version.Version); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(t, env.rec, "fn", v1.Version.Version); !errors.As(err, &sup) || !sup.Removed || sup.Active != v2.Version.Version {
		t.Fatalf("a later wait for version 1, removed, with version 2 deployed since: %v", err)
	}
}

// slowLoader blocks loading the function named slow until release is
// closed.
type slowLoader struct {
	cluster.Loader
	slow    string
	release chan struct{}
}

func (l slowLoader) Load(ctx context.Context, spec runtime.FunctionSpec) (*runtime.Function, error) {
	if spec.Name == l.slow {
		select {
		case <-l.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.Loader.Load(ctx, spec)
}

// A node that has loaded every function stays ready while a deploy
// compiles (every node compiles it at once, and /readyz used to drop on
// all of them together, so a load balancer probing it pulled the whole
// fleet on every deploy); the versions it served keep serving meanwhile.
func TestReadyWhileADeployLoads(t *testing.T) {
	release := make(chan struct{})
	env := newReconcileEnvWith(t, func(l cluster.Loader) cluster.Loader {
		return slowLoader{Loader: l, slow: "slow", release: release}
	})
	hello := env.deployTinyHello()
	slow := hello
	slow.Routes = []storage.Route{{Path: "/slow/*"}}
	env.apply(storage.Command{Op: storage.OpDeploy, Name: "slow", Spec: &slow})
	time.Sleep(200 * time.Millisecond) // the pass is under way, blocked in Load
	if ok, why := env.rec.Ready(); !ok {
		t.Fatalf("a node that loaded every function went unready while a deploy loads: %s", why)
	}
	if m, st := env.lookup("h", "/hello/x"); st != edge.RouteFound || m.Function != "hello" {
		t.Fatalf("the function served before the deploy: %v %+v", st, m)
	}
	close(release)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for ok, _ := env.rec.Ready(); ; ok, _ = env.rec.Ready() {
		if _, st := env.lookup("h", "/slow/x"); ok && st == edge.RouteFound {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatal("the slow function never served after its load was released")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// A module whose stored bytes fail their hash is moved aside and the load
// retried: once the module is uploaded again (a redeploy, or in a cluster
// a peer's copy), the version serves without a new deploy. Before, the
// function answered 503 "being deployed" until someone deleted the file
// by hand and deployed again; gojinn_functions_failed counts it meanwhile.
func TestReconcilerCorruptModuleHeals(t *testing.T) {
	dir := t.TempDir()
	env := newReconcileEnvIn(t, dir, nil)
	mod := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	spec := env.put(mod)
	spec.Mode = storage.ModePooled
	spec.Routes = []storage.Route{{Path: "/hello/*"}}
	path := filepath.Join(dir, "blobs", "sha256", spec.SHA256[:2], spec.SHA256)
	bad := bytes.Clone(mod)
	bad[len(bad)-1] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	res := env.apply(storage.Command{Op: storage.OpDeploy, Name: "hello", Spec: &spec})
	deadline := time.Now().Add(10 * time.Second)
	for env.rec.Failing() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the corrupt module's load never failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if env.blobs.Has(spec.SHA256) {
		t.Fatal("the corrupt module is still in the store")
	}
	env.put(mod) // the module uploaded again
	if err := waitReady(t, env.rec, "hello", res.Version.Version); err != nil {
		t.Fatalf("after the module came back: %v", err)
	}
	if n := env.rec.Failing(); n != 0 {
		t.Fatalf("Failing() = %d once served", n)
	}
}

// closedLoader fails every Load as an engine shutting down does, and
// counts them.
type closedLoader struct {
	cluster.Loader
	loads *atomic.Int32
}

func (l closedLoader) Load(context.Context, runtime.FunctionSpec) (*runtime.Function, error) {
	l.loads.Add(1)
	return nil, fmt.Errorf("load: %w", runtime.ErrEngineClosed)
}

// A load refused because the node is shutting down (its engine stopped
// at the end of the edge's grace) is no failure of the version: it is not
// counted in gojinn_functions_failed nor logged as an error.
func TestReconcilerShutdownIsNoLoadFailure(t *testing.T) {
	var loads atomic.Int32
	env := newReconcileEnvWith(t, func(l cluster.Loader) cluster.Loader { return closedLoader{l, &loads} })
	spec := env.put(runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"))
	spec.Mode = storage.ModePooled
	res := env.apply(storage.Command{Op: storage.OpDeploy, Name: "hello", Spec: &spec})
	deadline := time.Now().Add(10 * time.Second)
	for loads.Load() < 2 { // two passes tried it, so the first one's outcome is recorded
		if time.Now().After(deadline) {
			t.Fatal("the reconciler never tried to load the version")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := env.rec.Failing(); n != 0 {
		t.Fatalf("Failing() = %d for a load the shutdown refused", n)
	}
	if st := env.rec.VersionState("hello", res.Version.Version); st.State != "pending" {
		t.Fatalf("version state %+v, want pending", st)
	}
}
