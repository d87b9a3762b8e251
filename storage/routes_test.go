package storage

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// hostPathCheck stands in for the edge's route check (storage cannot
// import the edge): two functions conflict when they share a host and
// path; a path "/bad" is invalid. It records the names it was shown.
type hostPathCheck struct{ seen [][]string }

func (c *hostPathCheck) check(name string, routes []Route, others []FunctionRoutes) error {
	var names []string
	var hits []string
	for _, o := range others {
		names = append(names, o.Name)
		if slices.ContainsFunc(o.Routes, func(a Route) bool {
			return slices.ContainsFunc(routes, func(b Route) bool { return a.Host == b.Host && a.Path == b.Path })
		}) {
			hits = append(hits, fmt.Sprintf("%q", o.Name))
		}
	}
	c.seen = append(c.seen, names)
	for i, r := range routes {
		if r.Path == "/bad" {
			return fmt.Errorf("%w: routes[%d]: path %q is not served", ErrInvalid, i, r.Path)
		}
	}
	if len(hits) > 0 {
		return fmt.Errorf("%w with %s", ErrRouteConflict, strings.Join(hits, ", "))
	}
	return nil
}

func deployRoutes(name string, paths ...string) Command {
	c := deploy(name, name+strings.Join(paths, ""))
	c.Spec.Routes = nil
	for _, p := range paths {
		c.Spec.Routes = append(c.Spec.Routes, Route{Path: p})
	}
	return c
}

// The state machine itself refuses a deploy or rollback whose routes
// conflict with another function's active ones, so concurrent proposers
// cannot commit a conflict their pre-checks did not see. A refused command
// changes nothing but the applied index, and uses up no version number.
func TestRegistryRefusesRouteConflicts(t *testing.T) {
	run := func() (*Registry, []ApplyResult, *hostPathCheck) {
		r := NewRegistry()
		c := &hostPathCheck{}
		r.SetRouteCheck(c.check)
		res := applyAll(t, r,
			deployRoutes("alpha", "/api/*"),         // 1: alpha v1
			deployRoutes("alpha", "/a/*"),           // 2: alpha v2
			deployRoutes("beta", "/api/*", "/b"),    // 3: beta v1, now free
			rollback("alpha", 0),                    // 4: back to /api/*: refused
			deployRoutes("gamma", "/b"),             // 5: beta's /b: refused
			deployRoutes("delta", "/api/*", "/a/*"), // 6: both: refused, names both
			deployRoutes("gamma", "/g"),             // 7: unrelated: gamma v1
			deployRoutes("gamma", "/bad"),           // 8: invalid route
			rollback("alpha", 2),                    // 9: already active: no-op
			deployRoutes("alpha", "/api/*", "/x"),   // 10: beta still has /api/*
			remove("beta"),                          // 11
			rollback("alpha", 1),                    // 12: /api/* is free now
		)
		return r, res, c
	}
	r, res, c := run()
	for i, want := range []struct {
		version int64
		err     error
		msg     string
	}{
		{1, nil, ""}, {2, nil, ""}, {1, nil, ""},
		{0, ErrRouteConflict, `rollback of "alpha" to version 1 refused, nothing was changed: route conflict with "beta"`},
		{0, ErrRouteConflict, `deploy of "gamma" refused, nothing was deployed: route conflict with "beta"`},
		{0, ErrRouteConflict, `route conflict with "alpha", "beta"`},
		{1, nil, ""},
		{0, ErrInvalid, `deploy of "gamma" refused, nothing was deployed: invalid: routes[0]`},
		{2, nil, ""},
		{0, ErrRouteConflict, `deploy of "alpha" refused`},
		{0, nil, ""},
		{1, nil, ""},
	} {
		got := res[i]
		if got.Version.Version != want.version || !errors.Is(got.Err, want.err) || (want.err == nil) != (got.Err == nil) {
			t.Errorf("command %d: version %d, err %v; want version %d, err %v", i+1, got.Version.Version, got.Err, want.version, want.err)
		}
		if want.msg != "" && (got.Err == nil || !strings.Contains(got.Err.Error(), want.msg)) {
			t.Errorf("command %d: error %v, want it to contain %q", i+1, got.Err, want.msg)
		}
		if got.Index != uint64(i+1) {
			t.Errorf("command %d: Index %d", i+1, got.Index)
		}
	}
	st := r.State()
	if st.Index() != 12 || st.Applied() != 12 {
		t.Fatalf("index %d, applied %d: refused commands must still advance them", st.Index(), st.Applied())
	}
	alpha, _ := st.Function("alpha")
	gamma, _ := st.Function("gamma")
	if alpha.Active != 1 || len(alpha.Versions) != 2 || gamma.Active != 1 || len(gamma.Versions) != 1 {
		t.Fatalf("alpha %+v, gamma %+v: a refused command must change nothing", alpha, gamma)
	}
	if _, ok := st.Function("delta"); ok {
		t.Fatal("a refused first deploy registered the function")
	}
	// The check sees every other function with routes, sorted by name,
	// never the function itself.
	if got := strings.Join(c.seen[5], ","); got != "alpha,beta" {
		t.Fatalf("others shown for delta: %q, want alpha,beta", got)
	}
	if got := strings.Join(c.seen[3], ","); got != "beta" {
		t.Fatalf("others shown for alpha's rollback: %q, want beta", got)
	}

	// Every node applies the log the same way: same results, same text.
	_, again, _ := run()
	for i := range res {
		if fmt.Sprint(res[i].Err) != fmt.Sprint(again[i].Err) || res[i].Version.Version != again[i].Version.Version {
			t.Fatalf("command %d: %v, then %v on another registry", i+1, res[i].Err, again[i].Err)
		}
	}
}

// Without a check (the default, and storage's own tests) every route is
// accepted, as before; a check that forgets its sentinel still refuses the
// command as a conflict.
func TestRegistryRouteCheckDefaults(t *testing.T) {
	r := NewRegistry()
	res := applyAll(t, r, deployRoutes("a", "/x"), deployRoutes("b", "/x"))
	if res[1].Err != nil {
		t.Fatalf("no check: %v", res[1].Err)
	}
	r = NewRegistry()
	r.SetRouteCheck(func(string, []Route, []FunctionRoutes) error { return errors.New("no") })
	res = applyAll(t, r, deployRoutes("a", "/x"))
	if !errors.Is(res[0].Err, ErrRouteConflict) {
		t.Fatalf("check without a sentinel: %v", res[0].Err)
	}
}
