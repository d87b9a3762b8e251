package cluster

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/gojinn/gojinn/storage"
)

// The real stores satisfy what the admin API declares.
var (
	_ Registry  = (*Store)(nil)
	_ BlobStore = (*storage.Blobs)(nil)
)

// TestStoreBehindAPI drives the Raft-backed Store through the admin API and
// its client, the way gojinn-node wires them.
func TestStoreBehindAPI(t *testing.T) {
	s := openStore(t, inmemConfig(t, t.TempDir()))
	const token = "gjn_store-behind-api-test-token"
	handler, err := NewAPI(APIConfig{Registry: s, Blobs: s.Blobs(), TokenHash: HashToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	c := NewClient(srv.URL, token, srv.Client())
	ctx := testCtx(t)

	spec := storage.Spec{Mode: storage.ModeIsolated, Env: map[string]string{"K": "secret"}}
	for i := byte(1); i <= 3; i++ {
		mod := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{i}, 100*int(i))...)
		v, err := c.Deploy(ctx, "hello", bytes.NewReader(mod), spec, DeployOptions{})
		if err != nil || v.Version != int64(i) || v.Size != int64(len(mod)) {
			t.Fatalf("deploy %d: %+v, %v", i, v, err)
		}
	}
	if v, err := c.Rollback(ctx, "hello", 0); err != nil || v.Version != 2 {
		t.Fatalf("rollback: %d, %v", v.Version, err)
	}
	if _, err := c.Rollback(ctx, "hello", 7); !errors.Is(err, storage.ErrVersionNotFound) {
		t.Fatalf("rollback to a missing version: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.RaftState != "Leader" || st.Functions != 1 || st.Voters != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if err := c.Remove(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "hello"); !errors.Is(err, storage.ErrFunctionNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if len(s.Functions()) != 0 {
		t.Fatalf("functions after remove: %+v", s.Functions())
	}
}
