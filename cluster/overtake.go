package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/gojinn/gojinn/storage"
)

// ErrSuperseded means a later write overtook the awaited version before
// it was served, so it never will be: a deploy or rollback made another
// version of the function active, or a remove took the function away
// (Reconciler.WaitReady, the admin API's deploy and rollback waits). The
// awaited version is still committed. Errors that wrap it are a
// *SupersededError.
var ErrSuperseded = errors.New("version superseded")

// SupersededError says what overtook the awaited version.
type SupersededError struct {
	// Name is the function.
	Name string
	// Version is the version that was awaited.
	Version int64
	// Active is the version active instead: newer, or an older one a
	// later rollback brought back. Zero when the function is gone.
	Active int64
	// Removed is set when the function was removed after the awaited
	// version (Active, when set, was deployed after the removal).
	Removed bool
}

// Error describes what happened.
func (e *SupersededError) Error() string {
	switch {
	case e.Removed && e.Active != 0:
		return fmt.Sprintf("%s was removed before version %d was served (and deployed again as version %d)", e.Name, e.Version, e.Active)
	case e.Removed:
		return fmt.Sprintf("%s was removed before version %d was served", e.Name, e.Version)
	}
	return fmt.Sprintf("%s version %d was superseded by version %d before it was served", e.Name, e.Version, e.Active)
}

// Is makes errors.Is(err, ErrSuperseded) match.
func (e *SupersededError) Is(target error) bool { return target == ErrSuperseded }

// overtaken is the one test of whether a wait for version of name is over
// without version ever serving: f (ok false: none) is name in this node's
// registry. It returns the *SupersededError that ends the wait, or nil.
//
// A wait starts once version's command committed, but this node may not
// have applied it yet (it was committed through another node), and then
// its registry shows the state before: no such version or function yet,
// or, for a rollback, the version the rollback replaces still active.
// So sure is false when the verdict holds only if the registry has
// applied every command committed before the wait began (catch up, then
// ask again): another version active, or no function at all. Version
// numbers need no catch-up: they only grow, so a function that does not
// list version but lists a later one has applied version's deploy and
// lost it to a remove.
func overtaken(f storage.Function, ok bool, name string, version int64) (sup *SupersededError, sure bool) {
	if !ok {
		return &SupersededError{Name: name, Version: version, Removed: true}, false
	}
	if f.Active == version {
		return nil, true
	}
	if _, has := f.FindVersion(version); !has {
		if newest(f) > version {
			return &SupersededError{Name: name, Version: version, Active: f.Active, Removed: true}, true
		}
		return nil, true // version's deploy is not applied here yet
	}
	return &SupersededError{Name: name, Version: version, Active: f.Active}, false
}

// newest returns f's highest version number.
func newest(f storage.Function) int64 {
	var n int64
	for _, v := range f.Versions {
		n = max(n, v.Version)
	}
	return n
}

// registryCatchUp is what a registry may offer (*Store does): return once
// its state includes every command committed before the call. A registry
// without it, such as a bare storage.Registry with one writer, is taken to
// be caught up always.
type registryCatchUp interface {
	catchUp(ctx context.Context) error
}

// overtakeCheck applies overtaken to one wait, catching the registry up
// at most once (a read barrier) when the verdict needs it. The admin
// API's watch and Reconciler.WaitReady use it; it is not safe for
// concurrent use.
type overtakeCheck struct {
	name    string
	version int64
	// lookup reads name from this node's registry.
	lookup func(name string) (storage.Function, bool)
	// catchUp is the registry's catch-up; nil when it has none.
	catchUp  func(ctx context.Context) error
	caughtUp bool
}

// newOvertakeCheck returns the check for a wait for version of name in
// registry reg, read through lookup.
func newOvertakeCheck(reg any, lookup func(string) (storage.Function, bool), name string, version int64) *overtakeCheck {
	c := &overtakeCheck{name: name, version: version, lookup: lookup}
	if cu, ok := reg.(registryCatchUp); ok {
		c.catchUp = cu.catchUp
	}
	return c
}

// check returns the *SupersededError that ends the wait, or nil. err is
// a failed catch-up (no leader, say): the verdict is not known yet, and
// the caller asks again later, also without a registry change.
func (c *overtakeCheck) check(ctx context.Context) (sup *SupersededError, err error) {
	f, ok := c.lookup(c.name)
	sup, sure := overtaken(f, ok, c.name, c.version)
	if sup == nil || sure || c.caughtUp || c.catchUp == nil {
		return sup, nil
	}
	if err := c.catchUp(ctx); err != nil {
		return nil, fmt.Errorf("catching up the registry of a readiness wait: %w", err)
	}
	c.caughtUp = true
	// Re-read: catching up may have brought version in.
	f, ok = c.lookup(c.name)
	sup, _ = overtaken(f, ok, c.name, c.version)
	return sup, nil
}
