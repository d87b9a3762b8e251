package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/storage"
)

// gatedRegistry is a registry whose catch-up fails until open is set: a
// restarted node that has not reached a leader yet.
type gatedRegistry struct {
	*storage.Registry
	open     atomic.Bool
	attempts atomic.Int32
}

func (g *gatedRegistry) catchUp(context.Context) error {
	g.attempts.Add(1)
	if !g.open.Load() {
		return errors.New("no leader")
	}
	return nil
}

// Until the registry has caught up with the cluster, the reconciler is
// not ready and a route it does not know answers "catching up" (503), not
// "not found" (404): the registry may lack functions the cluster has.
// Once caught up, both return to normal.
func TestReconcilerNotReadyUntilCaughtUp(t *testing.T) {
	reg := &gatedRegistry{Registry: storage.NewRegistry()}
	router := &edge.Router{}
	rec := NewReconciler(reg, nil, enginetest.Engine(t), router, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("10 s without %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("a catch-up attempt and a route table", func() bool { return reg.attempts.Load() > 0 && router.Load() != nil })
	if ok, why := rec.Ready(); ok || !strings.Contains(why, "catching up") {
		t.Fatalf("before catching up: ready %v %q", ok, why)
	}
	if _, st := router.Lookup("example.com", "/anything", "GET"); st != edge.RouteCatchingUp {
		t.Fatalf("unknown route before catching up: %v, want RouteCatchingUp", st)
	}
	reg.open.Store(true)
	waitFor("readiness after catching up", func() bool { ok, _ := rec.Ready(); return ok })
	waitFor("404 for unknown routes", func() bool {
		_, st := router.Lookup("example.com", "/anything", "GET")
		return st == edge.RouteNotFound
	})
}
