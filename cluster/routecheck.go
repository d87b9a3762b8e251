package cluster

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/storage"
)

// CheckRoutes is the registry's storage.RouteCheck, built on the edge's
// own rules (edge.NewRouteTable): function name may serve routes unless a
// route is not a valid edge route (storage.ErrInvalid) or would match the
// same requests as a route of another function in others
// (storage.ErrRouteConflict, naming every such function in the order of
// others). OpenStore installs it, so the state machine refuses conflicts
// at commit; CheckDeploy runs it against the local state first for fast
// feedback.
//
// Conflicts among others themselves (state committed before the state
// machine checked routes) are not held against name: each other function
// is checked against name alone, and one whose own routes are invalid is
// skipped, as the route table skips it. Deterministic: the error depends
// only on the arguments and their order.
func CheckRoutes(name string, routes []storage.Route, others []storage.FunctionRoutes) error {
	mine := EdgeRoutes(name, routes)
	for i, rt := range mine {
		if err := rt.Validate(); err != nil {
			return fmt.Errorf("%w: routes[%d]: %w", storage.ErrInvalid, i, err)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	// The common case, no conflict anywhere, costs one table build.
	all := append([]edge.Route(nil), mine...)
	for _, o := range others {
		all = append(all, EdgeRoutes(o.Name, o.Routes)...)
	}
	if _, err := edge.NewRouteTable(all); err == nil {
		return nil
	}
	var names []string
	var first error
	for _, o := range others {
		theirs := EdgeRoutes(o.Name, o.Routes)
		if _, err := edge.NewRouteTable(theirs); err != nil {
			continue // never served: the route table skips it too
		}
		if _, err := edge.NewRouteTable(append(theirs, mine...)); err != nil {
			names = append(names, strconv.Quote(o.Name))
			if first == nil {
				first = err
			}
		}
	}
	if first == nil {
		return nil
	}
	return fmt.Errorf("%w with %s: %w", storage.ErrRouteConflict, strings.Join(names, ", "), first)
}
