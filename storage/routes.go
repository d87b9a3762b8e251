package storage

import (
	"errors"
	"fmt"
)

// FunctionRoutes is one function's active routes, as a RouteCheck sees
// them. Routes is shared with the registry's State: treat it as read-only.
type FunctionRoutes struct {
	Name   string
	Routes []Route
}

// RouteCheck reports whether function name may serve routes while every
// function in others (sorted by name, name itself excluded) serves its
// active routes. It returns nil when they can all be served together, an
// error wrapping ErrRouteConflict naming the functions whose routes
// overlap, or one wrapping ErrInvalid when routes themselves cannot be
// served. It must be deterministic (the same arguments give the same
// error text on every node: it runs inside Apply) and must not modify its
// arguments. The edge owns the routing rules, so the cluster package
// supplies the check (Registry.SetRouteCheck); storage never imports the
// edge.
type RouteCheck func(name string, routes []Route, others []FunctionRoutes) error

// ActiveRoutes returns every registered function's active routes except
// those of except, sorted by name: what a RouteCheck compares a deploy or
// rollback of except against. Functions whose active version has no
// routes are left out.
func (s *State) ActiveRoutes(except string) []FunctionRoutes {
	out := make([]FunctionRoutes, 0, len(s.sorted))
	for _, f := range s.sorted {
		if f.Name == except {
			continue
		}
		if v, ok := f.ActiveVersion(); ok && len(v.Routes) > 0 {
			out = append(out, FunctionRoutes{Name: f.Name, Routes: v.Routes})
		}
	}
	return out
}

// SetRouteCheck makes Apply refuse a deploy or rollback whose routes check
// rejects, so a route conflict is never committed, whatever the pre-checks
// of concurrent proposers saw. Call it before Raft applies anything (a log
// replayed without the check would reach a different state than one with
// it). A nil check, the default, accepts every route.
func (r *Registry) SetRouteCheck(check RouteCheck) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.routeCheck = check
}

// checkRoutes runs check on name's routes against every other function's
// active routes in s. Its error wraps ErrRouteConflict or ErrInvalid.
func (s *State) checkRoutes(check RouteCheck, name string, routes []Route) error {
	if check == nil {
		return nil
	}
	err := check(name, routes, s.ActiveRoutes(name))
	if err != nil && !errors.Is(err, ErrRouteConflict) && !errors.Is(err, ErrInvalid) {
		// A check that forgot its sentinel still refuses as a conflict.
		err = fmt.Errorf("%w: %w", ErrRouteConflict, err)
	}
	return err
}
