package cluster

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gojinn/gojinn/storage"
)

// The runtime's bounds of limits.memory_bytes (runtime.Limits): one wasm
// page, and the wasm32 address space.
const (
	minMemoryBytes = 64 << 10
	maxMemoryBytes = 4 << 30
)

// ValidateDeploySpec is the admin API's check of a deploy's spec on its
// own (validateDeploySpec), for clients that check before they upload.
func ValidateDeploySpec(name string, spec storage.Spec) error { return validateDeploySpec(name, spec) }

// validateDeploySpec is the admin API's check of a deploy's spec on its
// own, before the module is looked at: the registry's rules
// (storage.ValidateSpec), the edge's route rules (edge.Route.Validate:
// methods upper-case, listed once; host and path patterns) and the
// runtime's rules for a spec (reset needs mode pooled; memory_bytes within
// the runtime's bounds). A spec no node could serve is refused with 400
// `invalid` naming the field, instead of 422 `check_failed` after a
// compile. Errors wrap storage.ErrInvalid.
//
// The edge and runtime rules are not in storage.ValidateSpec because the
// state machine applies that to entries already in the Raft log, which
// must keep applying as they did (storage/command.go). The runtime's own
// check still runs in the deploy's pre-check and at load;
// TestDeploySpecRulesMatchRuntime keeps the two in step.
func validateDeploySpec(name string, spec storage.Spec) error {
	if err := storage.ValidateSpec(name, spec); err != nil {
		return err
	}
	for i, rt := range EdgeRoutes(name, spec.Routes) {
		if err := rt.Validate(); err != nil {
			// HTTP methods are case-sensitive (RFC 9110): "get" is
			// refused with the edge's hint to write "GET", not
			// quietly upper-cased.
			return fmt.Errorf("%w: spec.routes[%d]: %w", storage.ErrInvalid, i, err)
		}
		if strings.Contains(rt.Path, "%") {
			// Routes match the decoded path, so "/%41" would match
			// only a request for "/%2541". Not an edge rule: the state
			// machine applies those to entries already in the log.
			hint := "remove the '%'"
			if dec, err := url.PathUnescape(rt.Path); err == nil && !strings.Contains(dec, "%") {
				hint = fmt.Sprintf("write %q", dec)
			}
			return fmt.Errorf("%w: spec.routes[%d]: path %q has a '%%': routes match the decoded path, as a handler sees it; %s", storage.ErrInvalid, i, rt.Path, hint)
		}
	}
	if err := repeatedRoutes(spec.Routes); err != nil {
		return err
	}
	for i, rt := range spec.Routes {
		for _, m := range rt.Methods {
			if m == "CONNECT" || m == "PRI" {
				// The edge answers these itself (501, 505): a route for
				// them would never reach the function.
				return fmt.Errorf("%w: spec.routes[%d]: method %s never reaches a function (the edge refuses CONNECT tunnels and h2c prefaces); remove it", storage.ErrInvalid, i, m)
			}
		}
	}
	if spec.Reset != "" && spec.Reset != storage.ResetNone && spec.Mode != storage.ModePooled {
		mode := spec.Mode
		if mode == "" {
			mode = storage.ModeIsolated
		}
		return fmt.Errorf("%w: spec.reset %q needs mode %q, and the mode is %q (isolated instances are never reused): deploy with mode %q, or leave reset out",
			storage.ErrInvalid, spec.Reset, storage.ModePooled, mode, storage.ModePooled)
	}
	if m := spec.Limits.MemoryBytes; m != 0 && (m < minMemoryBytes || m > maxMemoryBytes) {
		return fmt.Errorf("%w: spec.limits.memory_bytes %d is outside %d (64 KiB) .. %d (4 GiB); leave it out (or 0) for the runtime's default",
			storage.ErrInvalid, m, minMemoryBytes, maxMemoryBytes)
	}
	return nil
}

// repeatedRoutes refuses two routes of one spec on the same host and path
// whose methods overlap (no methods means every method): the later one
// can never be the route that matches, so it is a mistake, often a copy.
// Different methods on one host and path are fine.
func repeatedRoutes(routes []storage.Route) error {
	for j, b := range routes {
		for i, a := range routes[:j] {
			if a.Path != b.Path || specHostKey(a.Host) != specHostKey(b.Host) {
				continue
			}
			if len(a.Methods) == 0 || len(b.Methods) == 0 || slices.ContainsFunc(b.Methods, func(m string) bool { return slices.Contains(a.Methods, m) }) {
				return fmt.Errorf("%w: spec.routes[%d] %q matches requests spec.routes[%d] %q already matches; remove it, or give the two routes different methods",
					storage.ErrInvalid, j, routeText(b), i, routeText(a))
			}
		}
	}
	return nil
}

// specHostKey is a route's host as the edge compares hosts: lower case,
// no trailing dot, "*" the same as no host.
func specHostKey(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "*" {
		return ""
	}
	return h
}

// routeText is a route as the CLI's --route takes it.
func routeText(r storage.Route) string {
	s := r.Host + r.Path
	if len(r.Methods) > 0 {
		s = strings.Join(r.Methods, ",") + " " + s
	}
	return s
}
