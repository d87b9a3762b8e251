package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// A restore answers once the functions it restored serve, as a deploy
// does: scripts call them right after it. When they do not serve within
// the wait bound, it answers 504 naming them, the state restored all the
// same.
func TestAPIRestoreWaitsUntilServed(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	release := make(chan struct{})
	asked := make(chan string, 4)
	a := h.adminAPI(n, func(c *APIConfig) {
		c.WaitReady = func(ctx context.Context, name string, version int64) error {
			asked <- name
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	})
	v, err := h.deploy(n, "fn", wat(t), storage.Route{Path: "/fn"})
	if err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := a.client.Backup(testCtx(t), &backup); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Remove(testCtx(t), "fn"); err != nil {
		t.Fatal(err)
	}
	// A function deployed after the backup, which the restore drops.
	if _, err := h.deploy(n, "extra", wat(t), storage.Route{Path: "/extra"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "extra to serve", func() bool { code, _ := h.get(n, "/extra"); return code == 200 })
	done := make(chan error, 1)
	go func() { done <- a.client.Restore(testCtx(t), bytes.NewReader(backup.Bytes())) }()
	select {
	case name := <-asked:
		if name != "fn" {
			t.Fatalf("the restore waited for %q, want fn", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restore did not wait for its function to serve")
	}
	select {
	case err := <-done:
		t.Fatalf("the restore answered (%v) before its function served", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("restore: %v", err)
	}
	if f, ok := n.store.Function("fn"); !ok || f.Active != v.Version {
		t.Fatalf("restored fn: %+v %v, want version %d active", f, ok, v.Version)
	}
	if code, _ := h.get(n, "/extra"); code != 404 {
		t.Fatalf("the function the restore dropped still answers %d once the restore answered", code)
	}

	// Not served within the bound: 504 naming the function.
	b := h.adminAPI(n, func(c *APIConfig) { c.WaitReady, c.WaitTimeout = peersNeverReady, 200*time.Millisecond })
	err = b.client.Restore(testCtx(t), bytes.NewReader(backup.Bytes()))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusGatewayTimeout || ae.Code != CodeWaitTimeout ||
		!strings.Contains(ae.Message, "the backup is restored") || !strings.Contains(ae.Message, "fn version") {
		t.Fatalf("restore whose function never serves: %v (%+v)", err, ae)
	}
}
