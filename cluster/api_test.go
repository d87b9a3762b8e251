package cluster

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gojinn/gojinn/storage"
)

func TestAPIHealthzNeedsNoToken(t *testing.T) {
	h := newAPIHarness(t, nil)
	r := h.do("GET", "/healthz", nil, "Authorization", "")
	if r.status != http.StatusOK || r.body != "ok\n" {
		t.Fatalf("healthz: %d %q", r.status, r.body)
	}
	if err := NewClient(h.srv.URL, "", h.srv.Client()).Healthz(t.Context()); err != nil {
		t.Fatalf("Client.Healthz: %v", err)
	}
}

func TestAPIReadyz(t *testing.T) {
	var ready atomic.Bool
	reason := "compiling 2 of 5 functions"
	h := newAPIHarness(t, func(c *APIConfig) {
		c.Ready = func() (bool, string) { return ready.Load(), reason }
	})
	r := h.do("GET", "/readyz", nil, "Authorization", "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.apiErr(t).Message, reason) {
		t.Fatalf("readyz not ready: %d %q", r.status, r.body)
	}
	var ae *APIError
	if err := h.client.Readyz(t.Context()); !errors.As(err, &ae) || ae.Code != CodeNotReady {
		t.Fatalf("Client.Readyz: %v", err)
	}
	ready.Store(true)
	if r := h.do("GET", "/readyz", nil, "Authorization", ""); r.status != http.StatusOK {
		t.Fatalf("readyz ready: %d %q", r.status, r.body)
	}
	if err := h.client.Readyz(t.Context()); err != nil {
		t.Fatalf("Client.Readyz: %v", err)
	}
}

func TestAPIAuth(t *testing.T) {
	h := newAPIHarness(t, nil)
	for _, tc := range []struct {
		name, header string
		status       int
		msg          string
	}{
		{"missing", "", 401, "missing admin token"},
		{"not bearer", "Basic " + testToken, 401, "must be \"Bearer <token>\""},
		{"empty bearer", "Bearer ", 401, "must be \"Bearer <token>\""},
		{"wrong token", "Bearer gjn_wrong", 401, "not valid for this node"},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1], 401, "not valid"},
		{"right token", "Bearer " + testToken, 200, ""},
		{"scheme case-insensitive", "bearer " + testToken, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/status", "/v1/functions", "/v1/nope"} {
				r := h.do("GET", path, nil, "Authorization", tc.header)
				want := tc.status
				if want == 200 && path == "/v1/nope" {
					want = 404
				}
				if r.status != want {
					t.Fatalf("GET %s with %q: %d %s, want %d", path, tc.header, r.status, r.body, want)
				}
				if want != 401 {
					continue
				}
				e := r.apiErr(t)
				if e.Code != CodeUnauthorized || !strings.Contains(e.Message, tc.msg) {
					t.Fatalf("GET %s: error %+v, want %q", path, e, tc.msg)
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Fatalf("WWW-Authenticate = %q", got)
				}
			}
		})
	}
	var ae *APIError
	_, err := NewClient(h.srv.URL, "gjn_wrong", h.srv.Client()).Status(t.Context())
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != CodeUnauthorized {
		t.Fatalf("client with a wrong token: %v", err)
	}
	// HEAD answers have no body; the client still says what is wrong.
	_, err = NewClient(h.srv.URL, "gjn_wrong", h.srv.Client()).HasBlob(t.Context(), strings.Repeat("a", 64))
	if !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(ae.Message, "token") {
		t.Fatalf("HasBlob with a wrong token: %v", err)
	}
}

func TestAPIUnknownRouteAndMethod(t *testing.T) {
	h := newAPIHarness(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/v1/nope", 404, CodeNotFound, ""},
		{"GET", "/v1/functions/hello/nope", 404, CodeNotFound, ""},
		{"GET", "/nope", 404, CodeNotFound, ""},
		{"GET", "/v1/functions/", 404, CodeNotFound, ""},
		{"GET", "/v1/functions/hello/", 404, CodeNotFound, ""},
		{"DELETE", "/v1/status", 405, CodeMethodNotAllowed, "GET, HEAD"},
		{"PATCH", "/v1/functions/hello", 405, CodeMethodNotAllowed, "DELETE, GET, HEAD, POST"},
		{"GET", "/v1/functions/hello/rollback", 405, CodeMethodNotAllowed, "POST"},
		{"GET", "/v1/blobs/" + strings.Repeat("a", 64), 405, CodeMethodNotAllowed, "HEAD, PUT"},
		{"POST", "/healthz", 405, CodeMethodNotAllowed, "GET, HEAD"},
	} {
		r := h.do(tc.method, tc.path, nil)
		if r.status != tc.status || r.apiErr(t).Code != tc.code || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow=%q %s; want %d %s Allow=%q", tc.method, tc.path, r.status, r.header.Get("Allow"), r.body, tc.status, tc.code, tc.allow)
		}
	}
	// Method errors under /v1 still need the token first.
	if r := h.do("DELETE", "/v1/status", nil, "Authorization", ""); r.status != 401 {
		t.Errorf("DELETE /v1/status without token: %d", r.status)
	}
}

func TestNewAPIConfigErrors(t *testing.T) {
	ok := APIConfig{Registry: newMemRegistry(), Blobs: newMemBlobs(), TokenHash: HashToken("x")}
	for _, tc := range []struct {
		name  string
		tweak func(*APIConfig)
		msg   string
	}{
		{"no registry", func(c *APIConfig) { c.Registry = nil }, "Registry"},
		{"no blobs", func(c *APIConfig) { c.Blobs = nil }, "Blobs"},
		{"no token", func(c *APIConfig) { c.TokenHash = [32]byte{} }, "TokenHash"},
		{"negative max", func(c *APIConfig) { c.MaxModuleBytes = -1 }, "MaxModuleBytes"},
		{"negative wait", func(c *APIConfig) { c.WaitTimeout = -1 }, "WaitTimeout"},
	} {
		cfg := ok
		tc.tweak(&cfg)
		_, err := NewAPI(cfg)
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := NewAPI(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
