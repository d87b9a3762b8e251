package cluster

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

func TestClientEveryEndpoint(t *testing.T) {
	h := newAPIHarness(t, nil)
	ctx := t.Context()
	c := h.client
	if list, err := c.Functions(ctx); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("Functions of an empty registry: %#v %v", list, err)
	}
	spec := storage.Spec{
		Mode:   "pooled",
		Env:    map[string]string{"GREETING": "hi"},
		Routes: []storage.Route{{Host: "example.com", Path: "/hello/*", Methods: []string{"GET"}}},
		Limits: storage.Limits{Timeout: storage.Duration(2 * time.Second), MemoryBytes: 32 << 20},
	}
	mod1 := testModule(1000, 1)
	v1, err := c.Deploy(ctx, "hello", bytes.NewReader(mod1), spec, DeployOptions{Wait: true})
	if err != nil {
		t.Fatalf("Deploy v1: %v", err)
	}
	if v1.Version != 1 || v1.SHA256 != sha256hex(mod1) || v1.Size != 1000 || v1.Mode != "pooled" ||
		v1.Limits.Timeout != storage.Duration(2*time.Second) || v1.Routes[0].Path != "/hello/*" {
		t.Fatalf("v1 = %+v", v1)
	}
	if v1.Env["GREETING"] != "" || len(v1.Env) != 1 {
		t.Fatalf("v1 env = %v, want the key with an empty value", v1.Env)
	}
	mod2 := testModule(2000, 2)
	v2, err := c.Deploy(ctx, "hello", io.MultiReader(bytes.NewReader(mod2)), spec, DeployOptions{Wait: true})
	if err != nil || v2.Version != 2 || v2.SHA256 != sha256hex(mod2) {
		t.Fatalf("Deploy v2 from a plain reader: %+v %v", v2, err)
	}
	if got := h.waitedFor(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("WaitReady saw versions %v, want [1 2]", got)
	}
	if _, err := c.Deploy(ctx, "other", bytes.NewReader(mod1), storage.Spec{}, DeployOptions{}); err != nil {
		t.Fatalf("Deploy other: %v", err)
	}
	if got := h.waitedFor(); len(got) != 2 {
		t.Fatalf("Deploy without Wait called WaitReady: %v", got)
	}

	list, err := c.Functions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Functions: %+v %v", list, err)
	}
	if s := list[0]; s.Name != "hello" || s.Active != 2 || s.Versions != 2 || s.SHA256 != v2.SHA256 ||
		s.Size != 2000 || s.Mode != "pooled" || len(s.Routes) != 1 || !s.DeployedAt.Equal(v2.DeployedAt) {
		t.Fatalf("Functions[0] = %+v", s)
	}
	if s := list[1]; s.Name != "other" || s.Routes == nil {
		t.Fatalf("Functions[1] = %+v", s)
	}

	f, err := c.Function(ctx, "hello")
	if err != nil || f.Name != "hello" || f.Active != 2 || len(f.Versions) != 2 {
		t.Fatalf("Function: %+v %v", f, err)
	}
	if av, ok := f.ActiveVersion(); !ok || av.SHA256 != v2.SHA256 {
		t.Fatalf("Function active version: %+v", av)
	}

	vs, err := c.Versions(ctx, "hello")
	if err != nil || len(vs) != 2 || vs[0].Version.Version != 1 || vs[0].Active || !vs[1].Active {
		t.Fatalf("Versions: %+v %v", vs, err)
	}

	rb, err := c.Rollback(ctx, "hello", 0)
	if err != nil || rb.Version != 1 {
		t.Fatalf("Rollback to previous: %+v %v", rb, err)
	}
	if got := h.waitedFor(); got[len(got)-1] != 1 {
		t.Fatalf("Rollback did not wait for version 1: %v", got)
	}
	if rb, err := c.Rollback(ctx, "hello", 2); err != nil || rb.Version != 2 {
		t.Fatalf("Rollback to 2: %+v %v", rb, err)
	}

	st, err := c.Status(ctx)
	if err != nil || st.Functions != 2 || st.NodeID != "node-1" || st.Version != "test" || st.RaftState != "Leader" {
		t.Fatalf("Status: %+v %v", st, err)
	}

	if err := c.Remove(ctx, "other"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := c.Function(ctx, "other"); !errors.Is(err, storage.ErrFunctionNotFound) {
		t.Fatalf("Function after Remove: %v", err)
	}
	if err := c.Healthz(ctx); err != nil {
		t.Fatalf("Healthz: %v", err)
	}
}

func TestClientDeploySkipsUploadWhenBlobExists(t *testing.T) {
	h := newAPIHarness(t, nil)
	mod := testModule(5000, 3)
	if _, err := h.client.Deploy(t.Context(), "a", bytes.NewReader(mod), storage.Spec{}, DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h.blobs.putCount(); n != 1 {
		t.Fatalf("first deploy: %d uploads, want 1", n)
	}
	var calls [][2]int64
	progress := func(sent, total int64) { calls = append(calls, [2]int64{sent, total}) }
	_, err := h.client.Deploy(t.Context(), "b", bytes.NewReader(mod), storage.Spec{}, DeployOptions{Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if n := h.blobs.putCount(); n != 1 {
		t.Fatalf("second deploy of the same module uploaded it again (%d uploads)", n)
	}
	if len(calls) != 1 || calls[0] != [2]int64{5000, 5000} {
		t.Fatalf("progress on a skipped upload: %v, want one (5000, 5000)", calls)
	}
	// With Stored set, a skipped upload is reported there instead.
	calls = nil
	var stored []int64
	_, err = h.client.Deploy(t.Context(), "c", bytes.NewReader(mod), storage.Spec{}, DeployOptions{
		Progress: progress, Stored: func(total int64) { stored = append(stored, total) },
	})
	if err != nil || len(calls) != 0 || len(stored) != 1 || stored[0] != 5000 || h.blobs.putCount() != 1 {
		t.Fatalf("skipped upload with Stored: %v, progress %v, stored %v, %d uploads", err, calls, stored, h.blobs.putCount())
	}
}

// An empty module file is refused before anything is sent, with a reason
// a user can act on (the node's own answer, "size 0", named the protocol).
func TestClientDeployEmptyModule(t *testing.T) {
	h := newAPIHarness(t, nil)
	_, err := h.client.Deploy(t.Context(), "a", bytes.NewReader(nil), storage.Spec{}, DeployOptions{})
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "the module is empty") {
		t.Fatalf("deploy of an empty module: %v", err)
	}
	if n := h.blobs.putCount(); n != 0 {
		t.Fatalf("an empty module was uploaded (%d uploads)", n)
	}
}

func TestClientDeployProgress(t *testing.T) {
	h := newAPIHarness(t, nil)
	const size = 3<<20 + 17
	mod := testModule(size, 4)
	// A file: streamed from its offset, not read into memory first.
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, append([]byte("junk"), mod...), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls [][2]int64
	v, err := h.client.Deploy(t.Context(), "big", f, storage.Spec{}, DeployOptions{
		Progress: func(sent, total int64) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, [2]int64{sent, total})
		},
	})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if v.SHA256 != sha256hex(mod) || v.Size != size {
		t.Fatalf("deployed %s/%d, want %s/%d", v.SHA256, v.Size, sha256hex(mod), size)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 2 {
		t.Fatalf("progress called %d times for a %d-byte upload", len(calls), size)
	}
	for i, c := range calls {
		if c[1] != size || c[0] <= 0 || c[0] > size || i > 0 && c[0] < calls[i-1][0] {
			t.Fatalf("progress call %d = %v after %v", i, c, calls[max(i-1, 0)])
		}
	}
	if last := calls[len(calls)-1]; last[0] != size {
		t.Fatalf("last progress call %v, want sent == %d", last, size)
	}
}

func TestClientErrorsAreAPIErrors(t *testing.T) {
	h := newAPIHarness(t, nil)
	ctx := t.Context()
	_, err := h.client.Function(ctx, "nope")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != CodeFunctionNotFound || err.Error() != ae.Message ||
		!strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Function(nope): %#v", err)
	}
	if !errors.Is(err, storage.ErrFunctionNotFound) || errors.Is(err, storage.ErrVersionNotFound) {
		t.Fatalf("errors.Is on %v", err)
	}
	if _, err := h.client.Deploy(ctx, "a", bytes.NewReader(testModule(10, 5)), storage.Spec{}, DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.Rollback(ctx, "a", 7)
	if !errors.Is(err, storage.ErrVersionNotFound) {
		t.Fatalf("Rollback to 7: %v", err)
	}
	// An invalid name fails before anything is uploaded.
	_, err = h.client.Deploy(ctx, "Bad_Name", bytes.NewReader(testModule(10, 6)), storage.Spec{}, DeployOptions{})
	if !errors.Is(err, storage.ErrInvalid) || h.blobs.putCount() != 1 {
		t.Fatalf("Deploy with a bad name: %v (uploads %d)", err, h.blobs.putCount())
	}
	h.reg.setFail(ErrUnavailable)
	err = h.client.Remove(ctx, "a")
	if !errors.As(err, &ae) || ae.Status != 503 || ae.RetryAfter != 2*time.Second || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Remove without a leader: %#v", err)
	}
}

func TestClientNonAPIAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, err := NewClient(srv.URL+"/", "t", srv.Client()).Status(t.Context())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "http_502" || !strings.Contains(ae.Message, "bad gateway") {
		t.Fatalf("502 from a proxy: %#v", err)
	}
	srv.Close()
	if err := NewClient(srv.URL, "t", srv.Client()).Healthz(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("closed server: %v", err)
	}
}

// vanishingBlobs says it has every module once, as if a cleanup removed it
// right after the client's HEAD.
type vanishingBlobs struct {
	*memBlobs
	mu   sync.Mutex
	lied bool
}

func (b *vanishingBlobs) Has(sha string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.lied {
		b.lied = true
		return true
	}
	return b.memBlobs.Has(sha)
}

func TestClientDeployReuploadsAVanishedBlob(t *testing.T) {
	blobs := &vanishingBlobs{memBlobs: newMemBlobs()}
	h := newAPIHarness(t, func(c *APIConfig) { c.Blobs = blobs })
	mod := testModule(100, 9)
	v, err := h.client.Deploy(t.Context(), "a", io.MultiReader(bytes.NewReader(mod)), storage.Spec{}, DeployOptions{})
	if err != nil || v.SHA256 != sha256hex(mod) || blobs.putCount() != 1 {
		t.Fatalf("deploy: %+v %v (uploads %d)", v, err, blobs.putCount())
	}
}
