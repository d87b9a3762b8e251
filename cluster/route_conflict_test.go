package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/storage"
)

// deployBody is a deploy request for the module sha of size bytes with
// routes (JSON) and extra fields.
func deployBody(sha string, size int, routes, extra string) string {
	return fmt.Sprintf(`{"sha256":%q,"size":%d,"mode":"pooled","routes":%s%s}`, sha, size, routes, extra)
}

// The reviewer's rollback scenario through the real admin API: a rollback
// that would bring back routes another function took since is refused at
// commit (422 check_failed, nothing changed), and the other function keeps
// every route. Before the state machine checked routes the rollback
// succeeded and beta lost all its routes (/b answered 404).
func TestAPIRollbackRouteConflictRefused(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, nil)
	mod := wat(t)
	sha := a.upload(mod)
	for _, d := range []struct{ name, routes string }{
		{"alpha", `[{"path":"/api/*"}]`},
		{"alpha", `[{"path":"/a/*"}]`},
		{"beta", `[{"path":"/api/*"},{"path":"/b"}]`},
	} {
		if r := a.doJSON("POST", "/v1/functions/"+d.name, deployBody(sha, len(mod), d.routes, "")); r.status != http.StatusCreated {
			t.Fatalf("deploy %s %s: %d %s", d.name, d.routes, r.status, r.body)
		}
	}

	r := a.doJSON("POST", "/v1/functions/alpha/rollback", "")
	e := r.apiErr(t)
	if r.status != http.StatusUnprocessableEntity || e.Code != CodeCheckFailed ||
		!strings.Contains(e.Message, `rollback of "alpha" to version 1 refused`) ||
		!strings.Contains(e.Message, `"beta"`) || !strings.Contains(e.Message, "nothing was changed") || !strings.Contains(e.Message, "choose other routes") {
		t.Fatalf("rollback onto beta's routes: %d %+v; want 422 check_failed naming beta", r.status, e)
	}
	if f, _ := n.store.Function("alpha"); f.Active != 2 {
		t.Fatalf("alpha active = %d after a refused rollback, want 2", f.Active)
	}
	if code, body := h.get(n, "/b"); code != http.StatusOK {
		t.Fatalf("/b answered %d %q: beta lost its routes", code, body)
	}
	for path, fn := range map[string]string{"/api/x": "beta", "/b": "beta", "/a/x": "alpha"} {
		if m, st := n.router.Lookup("h", path, "GET"); st != edge.RouteFound || m.Function != fn {
			t.Errorf("%s: %v %+v, want %s", path, st, m, fn)
		}
	}
}

// Concurrent deploys of different functions on the same route, sent to
// every node of a cluster: all pass their node's pre-check (forced here;
// the reviewer saw five of eight do so by chance), and the commit lets
// exactly one through. The others are 422 check_failed, also when a
// follower forwarded them, and an unrelated deploy still works afterwards.
func TestAPIConcurrentDeploysOneRouteWinner(t *testing.T) {
	h := newHarness(t, false)
	for range 3 {
		h.Start(true)
	}
	l := h.waitLeader()
	const racers = 8
	// The barrier holds every racer after its pre-check until all have
	// passed theirs, so they all propose against a state without /conf.
	var barrier sync.WaitGroup
	barrier.Add(racers)
	released := make(chan struct{})
	go func() { barrier.Wait(); close(released) }()
	mod := wat(t)
	var apis []*apiHarness
	for _, n := range h.nodes {
		apis = append(apis, h.adminAPI(n, func(c *APIConfig) {
			c.Check = func(ctx context.Context, name string, spec storage.Spec) error {
				err := n.rec.CheckDeploy(ctx, name, spec)
				if strings.HasPrefix(name, "c") {
					barrier.Done()
					select {
					case <-released:
					case <-time.After(30 * time.Second):
						return errors.New("test barrier: not every racer reached the check")
					}
				}
				return err
			}
		}))
	}
	var sha string
	for _, a := range apis {
		sha = a.upload(mod)
	}

	results := make([]response, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := apis[i%len(apis)]
			results[i] = a.doJSON("POST", fmt.Sprintf("/v1/functions/c%d", i+1), deployBody(sha, len(mod), `[{"path":"/conf"}]`, ""))
		}()
	}
	wg.Wait()
	var winners []string
	for i, r := range results {
		switch r.status {
		case http.StatusCreated:
			winners = append(winners, fmt.Sprintf("c%d", i+1))
		case http.StatusUnprocessableEntity:
			if e := r.apiErr(t); e.Code != CodeCheckFailed || !strings.Contains(e.Message, "nothing was deployed") ||
				!strings.Contains(e.Message, "route conflict") {
				t.Errorf("c%d: %+v", i+1, e)
			}
		default:
			t.Errorf("c%d: %d %s", i+1, r.status, r.body)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("committed: %v; want exactly one deploy of /conf", winners)
	}
	waitFor(t, 10*time.Second, "every node to apply the winner", func() bool {
		for _, n := range h.nodes {
			if _, ok := n.store.Function(winners[0]); !ok {
				return false
			}
		}
		return true
	})
	for _, n := range h.nodes {
		if got := n.store.State().Len(); got != 1 {
			t.Fatalf("node %d registers %d functions, want only %s", n.i, got, winners[0])
		}
	}

	// Nothing conflicting was committed, so an unrelated deploy (on a
	// follower, forwarded) passes the pre-check and the commit. The
	// follower answers once it has applied the entry itself, so its own
	// reads (and readiness waits) see the deploy even without waiting.
	fn := h.follower(l)
	if r := apis[fn.i].doJSON("POST", "/v1/functions/other", deployBody(sha, len(mod), `[{"path":"/other"}]`, `,"wait":false`)); r.status != http.StatusCreated {
		t.Fatalf("unrelated deploy: %d %s", r.status, r.body)
	}
	if _, ok := fn.store.Function("other"); !ok {
		t.Fatal("the follower that took the deploy does not show it yet")
	}
}

// A pre-check against state committed before the state machine checked
// routes (two functions already on one route) refuses only deploys that
// conflict themselves, not every deploy.
func TestCheckRoutesIgnoresOldConflictsAmongOthers(t *testing.T) {
	others := []storage.FunctionRoutes{
		{Name: "c1", Routes: []storage.Route{{Path: "/conf"}}},
		{Name: "c2", Routes: []storage.Route{{Path: "/conf"}, {Path: "/two"}}},
		{Name: "odd", Routes: []storage.Route{{Path: "/x/*/y"}}}, // invalid: never served
	}
	if err := CheckRoutes("other", []storage.Route{{Path: "/other"}}, others); err != nil {
		t.Fatalf("unrelated deploy refused: %v", err)
	}
	err := CheckRoutes("c3", []storage.Route{{Path: "/conf"}, {Path: "/two"}}, others)
	if !errors.Is(err, storage.ErrRouteConflict) || !errors.Is(err, edge.ErrRouteConflict) ||
		!strings.HasPrefix(err.Error(), `route conflict with "c1", "c2": `) {
		t.Fatalf("conflict: %v", err)
	}
	if again := CheckRoutes("c3", []storage.Route{{Path: "/conf"}, {Path: "/two"}}, others); again.Error() != err.Error() {
		t.Fatalf("not deterministic: %q, then %q", err, again)
	}
	if err := CheckRoutes("c3", []storage.Route{{Path: "/a/*/b"}}, nil); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "routes[0]") {
		t.Fatalf("invalid route: %v", err)
	}
	if err := CheckRoutes("c3", []storage.Route{{Path: "/conf", Methods: []string{"POST"}}}, others[:1]); err != nil {
		t.Fatalf("a method route beside an any-method route does not conflict: %v", err)
	}
}

// The reviewer's reproduction of defect 2: parallel deploys of one
// function that wait. Each answers once its version serves or a newer one
// is active (409 superseded), never 504 after the whole wait_timeout, and
// the version that stays active answers 201.
func TestAPIParallelDeploysOfOneFunction(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, nil)
	mod := wat(t)
	sha := a.upload(mod)
	const deploys = 4
	results := make([]response, deploys)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range deploys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.doJSON("POST", "/v1/functions/same", deployBody(sha, len(mod), `[{"path":"/same"}]`, `,"wait_timeout":"3s"`))
		}()
	}
	wg.Wait()
	if d := time.Since(start); d >= 3*time.Second {
		t.Errorf("the deploys took %v: a wait ran into wait_timeout", d)
	}
	f, _ := n.store.Function("same")
	var won bool
	for i, r := range results {
		switch r.status {
		case http.StatusCreated:
			var v storage.Version
			if err := json.Unmarshal([]byte(r.body), &v); err != nil {
				t.Fatal(err)
			}
			won = won || v.Version == f.Active
		case http.StatusConflict:
			if e := r.apiErr(t); e.Code != CodeSuperseded || !strings.Contains(e.Message, "became active before it was served") {
				t.Errorf("deploy %d: %+v", i, e)
			}
		default:
			t.Errorf("deploy %d: %d %s", i, r.status, r.body)
		}
	}
	if !won {
		t.Errorf("the active version %d did not answer 201: %+v", f.Active, results)
	}
}

// A deploy whose wait is overtaken answers 409 superseded at once, also
// when APIConfig.WaitReady (a cluster-wide wait polling peers) would only
// notice by timing out; the Go client matches it with ErrSuperseded.
func TestAPIWaitSuperseded(t *testing.T) {
	h := newAPIHarness(t, func(c *APIConfig) {
		c.WaitReady = func(ctx context.Context, name string, version int64) error {
			<-ctx.Done()
			return fmt.Errorf("%s version %d is not servable yet on: node-2: %w", name, version, context.Cause(ctx))
		}
	})
	mod := testModule(10, 1)
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := h.client.Deploy(t.Context(), "fn", bytes.NewReader(mod), storage.Spec{}, DeployOptions{Wait: true, WaitTimeout: 10 * time.Second})
		done <- result{err, time.Since(start)}
	}()
	waitFor(t, 10*time.Second, "version 1 to commit", func() bool {
		f, ok := h.reg.Function("fn")
		return ok && f.Active == 1
	})
	if _, err := h.client.Deploy(t.Context(), "fn", bytes.NewReader(mod), storage.Spec{}, DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	res := <-done
	var ae *APIError
	if !errors.As(res.err, &ae) || ae.Status != http.StatusConflict || ae.Code != CodeSuperseded || !errors.Is(res.err, ErrSuperseded) ||
		!strings.Contains(ae.Message, `version 1 of "fn" is committed, but version 2 became active`) {
		t.Fatalf("overtaken deploy: %v (%+v)", res.err, ae)
	}
	if res.took > 5*time.Second {
		t.Fatalf("the overtaken deploy answered after %v; want at once, not at wait_timeout", res.took)
	}
}
