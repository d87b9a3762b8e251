package runtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// A guest that returns normally just as the guard stops it (here: the
// guest returns, and the call waits for the timeout to fire before it
// reports back) fails with the stop's reason: whether its answer was
// based on a wait the stop cut short cannot be told from outside, so a
// stop the guard records before its stop() is a stop (DESIGN.md, "Why a
// stopped call always fails"). Both guard forms: the one-shot guard of an
// isolated instance and the reusable guard of a warm pooled one.
func TestStopAfterReturnFails(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = runtimetest.CacheDir()
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	ctx := context.Background()
	f, err := e.Load(ctx, FunctionSpec{Name: "f", Module: runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat"),
		Mode: ModePooled, Limits: Limits{Timeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	m, p, err := f.ensureCompiled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// answerThenWait runs the guest's handler to its normal end and then
	// waits, as if the guest had just returned, until the guard stops it.
	answerThenWait := func(t *testing.T, in *instance, g *guard) error {
		if _, err := in.call(g.ctx); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			g.mu.Lock()
			halted := g.fired || (!g.reusable && g.ctx.Err() != nil)
			g.mu.Unlock()
			if halted {
				return nil
			}
			if time.Now().After(deadline) {
				t.Error("the guard did not stop the call within 10 s")
				return nil
			}
			time.Sleep(time.Millisecond)
		}
	}
	check := func(t *testing.T, ierr *InvokeError) {
		t.Helper()
		if ierr == nil || !errors.Is(ierr, ErrTimeout) {
			t.Fatalf("a call stopped after the guest returned ended with %v, want ErrTimeout", ierr)
		}
	}

	t.Run("one-shot", func(t *testing.T) {
		in := f.allocInstance(false)
		defer in.sb.close()
		_, ierr := f.guarded(ctx, in.sb, "handling the request", 0, func(g *guard) error {
			if g.reusable {
				t.Error("an isolated instance got a reusable guard")
			}
			if err := in.start(g, m); err != nil {
				return err
			}
			return answerThenWait(t, in, g)
		})
		check(t, ierr)
	})

	t.Run("reusable", func(t *testing.T) {
		in, err := p.acquire(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, ierr := f.guarded(ctx, in.sb, "handling the request", 0, func(g *guard) error {
			if !g.reusable {
				t.Error("a warm instance got a one-shot guard")
			}
			return answerThenWait(t, in, g)
		})
		p.release(in, ierr != nil)
		check(t, ierr)
	})
}
