package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/storage"
)

// peersNeverReady is a cluster-wide APIConfig.WaitReady whose peers stay
// "pending" (Agent.WaitServable once this node serves the version): it
// learns nothing of a later write and ends only with ctx.
func peersNeverReady(ctx context.Context, name string, version int64) error {
	<-ctx.Done()
	return fmt.Errorf("%s version %d is not servable yet on: node-2: %w", name, version, context.Cause(ctx))
}

// waitResult is how a waiting deploy ended.
type waitResult struct {
	err  error
	took time.Duration
}

// deployWaiting deploys module as name through a's client, waiting up to
// wait, in the background.
func deployWaiting(t *testing.T, a *apiHarness, name string, module []byte, wait time.Duration, routes ...storage.Route) <-chan waitResult {
	done := make(chan waitResult, 1)
	go func() {
		start := time.Now()
		_, err := a.client.Deploy(t.Context(), name, bytes.NewReader(module),
			storage.Spec{Mode: storage.ModePooled, Routes: routes}, DeployOptions{Wait: true, WaitTimeout: wait})
		done <- waitResult{err, time.Since(start)}
	}()
	return done
}

// A deploy waiting for the cluster is overtaken by a rollback to an
// *older* version: it answers 409 superseded naming that version at
// once, not 504 at wait_timeout. The API's watch used to count only a
// newer active version.
func TestAPIWaitSupersededByRollbackToOlder(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, func(c *APIConfig) { c.WaitReady = peersNeverReady })
	mod := wat(t)
	v1, err := h.deploy(n, "fn", mod, storage.Route{Path: "/one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.deploy(n, "fn", mod, storage.Route{Path: "/two"}); err != nil {
		t.Fatal(err)
	}
	const wait = 8 * time.Second
	done := deployWaiting(t, a, "fn", mod, wait, storage.Route{Path: "/three"})
	waitFor(t, 10*time.Second, "version 3 to commit", func() bool {
		f, ok := n.store.Function("fn")
		return ok && f.Active == 3
	})
	if _, err := n.store.Rollback(testCtx(t), "fn", v1.Version); err != nil {
		t.Fatal(err)
	}
	res := <-done
	var ae *APIError
	if !errors.As(res.err, &ae) || ae.Status != http.StatusConflict || ae.Code != CodeSuperseded || !errors.Is(res.err, ErrSuperseded) ||
		!strings.Contains(ae.Message, `version 3 of "fn" is committed, but version 1 became active`) {
		t.Fatalf("deploy overtaken by a rollback to version 1: %v (%+v)", res.err, ae)
	}
	if res.took > wait/2 {
		t.Fatalf("the overtaken deploy answered after %v; want at once, not at wait_timeout (%v)", res.took, wait)
	}
}

// A deploy waiting for the cluster is overtaken by a removal of the
// function (DELETE /v1/functions/{name}, `functions rm`): it answers at
// once, 409 superseded saying the function was removed, not 504 at
// wait_timeout.
func TestAPIWaitOvertakenByRemove(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, func(c *APIConfig) { c.WaitReady = peersNeverReady })
	mod := wat(t)
	const wait = 8 * time.Second
	done := deployWaiting(t, a, "fn", mod, wait, storage.Route{Path: "/fn"})
	waitFor(t, 10*time.Second, "version 1 to commit", func() bool {
		_, ok := n.store.Function("fn")
		return ok
	})
	if err := a.client.Remove(testCtx(t), "fn"); err != nil {
		t.Fatal(err)
	}
	res := <-done
	var ae *APIError
	if !errors.As(res.err, &ae) || ae.Status != http.StatusConflict || ae.Code != CodeSuperseded || !errors.Is(res.err, ErrSuperseded) ||
		!strings.Contains(ae.Message, `version 1 of "fn" is committed, but the function was removed while the deploy waited`) {
		t.Fatalf("deploy overtaken by a remove: %v (%+v)", res.err, ae)
	}
	if res.took > wait/2 {
		t.Fatalf("the overtaken deploy answered after %v; want at once, not at wait_timeout (%v)", res.took, wait)
	}
}

// laggingRegistry is a node's registry that stopped applying commands at
// frozen: reads show that state and catching up fails, as on a follower
// cut off right after it forwarded a write (its Store.awaitLocal gave
// up). Writes still commit through the store, and its notifications
// still come.
type laggingRegistry struct {
	*Store
	frozen *storage.State
}

func (l *laggingRegistry) State() *storage.State { return l.frozen }

func (l *laggingRegistry) Functions() []storage.Function { return l.frozen.Functions() }

func (l *laggingRegistry) Function(name string) (storage.Function, bool) {
	return l.frozen.Function(name)
}

func (l *laggingRegistry) catchUp(context.Context) error {
	return fmt.Errorf("%w: cut off from the leader", ErrUnavailable)
}

// lagBehind starts a one-node cluster with fn deployed twice (versions 1
// and 2, 2 active) and returns a view of its registry frozen at that
// state that cannot catch up, and the module.
func lagBehind(t *testing.T) (*harness, *hnode, *laggingRegistry, []byte) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	mod := wat(t)
	for _, path := range []string{"/one", "/two"} {
		if _, err := h.deploy(n, "fn", mod, storage.Route{Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	return h, n, &laggingRegistry{Store: n.store, frozen: n.store.State()}, mod
}

// A write this node has not applied yet is not overtaken: the registry
// still shows the state before it (the version a rollback replaces
// active, a version or function not there yet). Until it catches up, the
// wait goes on and ends at wait_timeout (504), never 409 superseded.
func TestAPIWaitNotSupersededBeforeApplied(t *testing.T) {
	h, n, lag, mod := lagBehind(t)
	a := h.adminAPI(n, func(c *APIConfig) {
		c.Registry = lag
		c.WaitReady = peersNeverReady
	})
	sha := a.upload(mod)
	for _, c := range []struct{ what, path, body string }{
		{"rollback to version 1", "/v1/functions/fn/rollback", `{"version":1,"wait_timeout":"1s"}`},
		{"deploy of version 3", "/v1/functions/fn", deployBody(sha, len(mod), `[{"path":"/three"}]`, `,"wait_timeout":"1s"`)},
		{"first deploy of a function", "/v1/functions/new", deployBody(sha, len(mod), `[{"path":"/new"}]`, `,"wait_timeout":"1s"`)},
	} {
		r := a.doJSON("POST", c.path, c.body)
		if e := r.apiErr(t); r.status != http.StatusGatewayTimeout || e.Code != CodeWaitTimeout {
			t.Errorf("%s, not applied on this node: %d %+v; want 504 wait_timeout", c.what, r.status, e)
		}
	}
}

// Reconciler.WaitReady decides as the API's watch does: a rollback this
// node has not applied (the version it replaces still active, no catch-up
// possible) is not reported as superseded.
func TestReconcilerWaitReadyNotSupersededBeforeApplied(t *testing.T) {
	_, n, lag, _ := lagBehind(t)
	if _, err := n.store.Rollback(testCtx(t), "fn", 1); err != nil {
		t.Fatal(err)
	}
	rec := NewReconciler(lag, n.store.Blobs(), n.engine, &edge.Router{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := rec.WaitReady(ctx, "fn", 1)
	if errors.Is(err, ErrSuperseded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a rollback not applied here: %v; want the deadline, not superseded", err)
	}
}

// overtaken's verdicts, and which of them need the registry caught up
// first.
func TestOvertaken(t *testing.T) {
	versions := func(active int64, vs ...int64) storage.Function {
		f := storage.Function{Name: "fn", Active: active}
		for _, v := range vs {
			f.Versions = append(f.Versions, storage.Version{Version: v})
		}
		return f
	}
	for _, c := range []struct {
		what    string
		f       storage.Function
		ok      bool
		version int64
		want    *SupersededError // nil: not overtaken
		sure    bool
	}{
		{"active", versions(2, 1, 2), true, 2, nil, true},
		{"deploy not applied yet", versions(2, 1, 2), true, 3, nil, true},
		{"newer active", versions(3, 1, 2, 3), true, 2, &SupersededError{Name: "fn", Version: 2, Active: 3}, false},
		{"older active: a rollback since, or this rollback not applied", versions(1, 1, 2, 3), true, 3, &SupersededError{Name: "fn", Version: 3, Active: 1}, false},
		{"gone: removed, or the first deploy not applied", storage.Function{}, false, 1, &SupersededError{Name: "fn", Version: 1, Removed: true}, false},
		{"removed and deployed again", versions(4, 4), true, 2, &SupersededError{Name: "fn", Version: 2, Active: 4, Removed: true}, true},
	} {
		sup, sure := overtaken(c.f, c.ok, "fn", c.version)
		if (sup == nil) != (c.want == nil) || sup != nil && *sup != *c.want || sure != c.sure {
			t.Errorf("%s: %+v sure=%v; want %+v sure=%v", c.what, sup, sure, c.want, c.sure)
		}
	}
}
