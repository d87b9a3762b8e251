package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gojinn/gojinn/storage"
)

// testToken is the admin token of every harness.
const testToken = "gjn_test-token-for-the-api-tests"

// apiHarness is one API over a real socket with in-memory stores.
type apiHarness struct {
	t      *testing.T
	reg    *memRegistry
	blobs  *memBlobs
	srv    *httptest.Server
	client *Client
	logs   *lockedBuffer

	mu     sync.Mutex
	checks []string // names Check saw
	waits  []int64  // versions WaitReady saw
}

// newAPIHarness starts an API; tweak adjusts the config before NewAPI.
func newAPIHarness(t *testing.T, tweak func(*APIConfig)) *apiHarness {
	t.Helper()
	h := &apiHarness{t: t, reg: newMemRegistry(), blobs: newMemBlobs(), logs: &lockedBuffer{}}
	cfg := APIConfig{
		Registry:  h.reg,
		Blobs:     h.blobs,
		TokenHash: HashToken(testToken),
		Check: func(_ context.Context, name string, _ storage.Spec) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.checks = append(h.checks, name)
			return nil
		},
		WaitReady: func(_ context.Context, _ string, version int64) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.waits = append(h.waits, version)
			return nil
		},
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: "test",
	}
	if tweak != nil {
		tweak(&cfg)
	}
	handler, err := NewAPI(cfg)
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	h.client = NewClient(h.srv.URL, testToken, h.srv.Client())
	return h
}

// waitedFor returns the versions WaitReady was asked about.
func (h *apiHarness) waitedFor() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.waits...)
}

// response is a raw HTTP answer.
type response struct {
	status int
	header http.Header
	body   string
}

// apiErr decodes the error envelope, failing the test when absent.
func (r response) apiErr(t *testing.T) APIError {
	t.Helper()
	var env struct {
		Error *APIError `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil || env.Error == nil {
		t.Fatalf("want an error envelope, got %d %q (%v)", r.status, r.body, err)
	}
	return *env.Error
}

// do sends a raw request with the admin token unless hdr overrides it.
func (h *apiHarness) do(method, path string, body io.Reader, hdr ...string) response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// doJSON sends a raw JSON body.
func (h *apiHarness) doJSON(method, path, body string) response {
	h.t.Helper()
	return h.do(method, path, strings.NewReader(body), "Content-Type", "application/json")
}

// upload stores a module and returns its hash.
func (h *apiHarness) upload(mod []byte) string {
	h.t.Helper()
	sha := sha256hex(mod)
	if r := h.do("PUT", "/v1/blobs/"+sha, bytes.NewReader(mod)); r.status != http.StatusCreated {
		h.t.Fatalf("upload: %d %s", r.status, r.body)
	}
	return sha
}

// testModule returns n pseudo-random bytes, different per seed.
func testModule(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
