package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// kvHarness is the admin API over a real one-voter Raft Store.
type kvHarness struct {
	*apiHarness
	store *Store
}

func newKVHarness(t *testing.T) *kvHarness {
	t.Helper()
	s := openStore(t, inmemConfig(t, t.TempDir()))
	if err := s.ConfigureKV(KVConfig{Limits: storage.KVLimits{MaxValueBytes: 64, MaxKeys: 3}}); err != nil {
		t.Fatal(err)
	}
	handler, err := NewAPI(APIConfig{Registry: s, Blobs: s.Blobs(), TokenHash: HashToken(testToken)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	h := &apiHarness{t: t, srv: srv, client: NewClient(srv.URL, testToken, srv.Client())}
	return &kvHarness{apiHarness: h, store: s}
}

// TestAPIKVClient drives every KV endpoint through the Go client.
func TestAPIKVClient(t *testing.T) {
	h := newKVHarness(t)
	c, ctx := h.client, testCtx(t)

	// Keys that need escaping survive the URL: slashes, dots, spaces,
	// percent signs, question marks and non-ASCII.
	keys := []string{"plain", "a/b/c", ".", "..", "a/../b", "a//b", "sp ace", "100%", "q?x=1#f", "\u00e9t\u00e9", "/lead"}
	versions := map[string]uint64{}
	for i, k := range keys {
		v, err := c.KVPut(ctx, "esc", k, []byte(fmt.Sprint("value ", i)), KVWriteOptions{})
		if err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		versions[k] = v
		if i == 2 {
			// Raise the quota for this namespace's test keys.
			if err := h.store.ConfigureKV(KVConfig{Limits: storage.KVLimits{MaxValueBytes: 64, MaxKeys: 100}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, k := range keys {
		e, err := c.KVGet(ctx, "esc", k, KVReadOptions{})
		if err != nil || string(e.Value) != fmt.Sprint("value ", i) || e.Version != versions[k] || e.Key != k {
			t.Fatalf("get %q: %+v, %v", k, e, err)
		}
	}
	// Listing pages through them in key order.
	var listed []string
	opts := KVListOptions{Limit: 4, Consistency: ConsistencyLinearizable}
	for {
		page, err := c.KVList(ctx, "esc", opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page.Keys {
			listed = append(listed, k.Key)
			if k.Version != versions[k.Key] || k.Size == 0 {
				t.Fatalf("list entry %+v", k)
			}
		}
		if page.Cursor == "" {
			break
		}
		opts.Cursor = page.Cursor
	}
	if len(listed) != len(keys) || listed[0] != "." || listed[len(listed)-1] != "\u00e9t\u00e9" {
		t.Fatalf("listed %q", listed)
	}

	// TTL and CAS.
	v, err := c.KVPut(ctx, "app", "lock", []byte("me"), KVWriteOptions{TTL: time.Minute, CAS: new(uint64)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.KVGet(ctx, "app", "lock", KVReadOptions{Consistency: ConsistencyLinearizable})
	if err != nil || e.Version != v || e.ExpiresAt.IsZero() || time.Until(e.ExpiresAt) > time.Minute {
		t.Fatalf("ttl key: %+v, %v", e, err)
	}
	_, err = c.KVPut(ctx, "app", "lock", []byte("you"), KVWriteOptions{CAS: new(uint64)})
	var ce *storage.KVConflictError
	var ae *APIError
	if !errors.As(err, &ce) || ce.Current != v || ce.Expected != 0 || !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != CodeKVConflict {
		t.Fatalf("create-only over an existing key: %v", err)
	}
	if !errors.Is(err, storage.ErrKVConflict) || !strings.Contains(err.Error(), "retry with its version") {
		t.Fatalf("conflict message: %v", err)
	}
	v2, err := c.KVPut(ctx, "app", "lock", []byte("renewed"), KVWriteOptions{CAS: &v})
	if err != nil || v2 <= v {
		t.Fatalf("cas at the current version: %d, %v", v2, err)
	}
	if err := c.KVDelete(ctx, "app", "lock", KVWriteOptions{CAS: &v}); !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("delete at a stale version: %v", err)
	}
	if err := c.KVDelete(ctx, "app", "lock", KVWriteOptions{CAS: &v2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVGet(ctx, "app", "lock", KVReadOptions{}); !errors.Is(err, storage.ErrKVNotFound) || !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("get after delete: %v", err)
	}
	if err := c.KVDelete(ctx, "app", "lock", KVWriteOptions{}); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}

	// Limits: value size and the key quota (3 in namespace app).
	if _, err := c.KVPut(ctx, "app", "big", bytes.Repeat([]byte("x"), 65), KVWriteOptions{}); !errors.Is(err, storage.ErrKVTooLarge) || !errors.As(err, &ae) || ae.Status != 413 {
		t.Fatalf("value over 64 bytes: %v", err)
	}
	if err := h.store.ConfigureKV(KVConfig{Limits: storage.KVLimits{MaxValueBytes: 64, MaxKeys: 3}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.KVPut(ctx, "app", fmt.Sprint("k", i), []byte("v"), KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.KVPut(ctx, "app", "k3", []byte("v"), KVWriteOptions{}); !errors.Is(err, storage.ErrKVQuota) || !errors.As(err, &ae) || ae.Status != http.StatusInsufficientStorage {
		t.Fatalf("over the quota: %v", err)
	}

	// Share lists.
	info, err := c.KVShare(ctx, "app", []string{"worker", "billing"})
	if err != nil || strings.Join(info.Share, ",") != "billing,worker" || info.Keys != 3 {
		t.Fatalf("share: %+v, %v", info, err)
	}
	if err := h.store.KVCheckAccess("billing", "app"); err != nil {
		t.Fatal(err)
	}
	page, err := c.KVList(ctx, "app", KVListOptions{Prefix: "k"})
	if err != nil || len(page.Keys) != 3 || strings.Join(page.Share, ",") != "billing,worker" || page.Cursor != "" {
		t.Fatalf("list with share: %+v, %v", page, err)
	}
	if info, err := c.KVShare(ctx, "app", nil); err != nil || len(info.Share) != 0 {
		t.Fatalf("unshare: %+v, %v", info, err)
	}
}

// TestAPIKVRaw checks the HTTP surface: headers, status codes and error
// codes, as curl would see them.
func TestAPIKVRaw(t *testing.T) {
	h := newKVHarness(t)
	r := h.do("PUT", "/v1/kv/app/greeting?ttl=1h", strings.NewReader("hi"))
	if r.status != 200 || r.header.Get("ETag") == "" || !strings.Contains(r.body, `"version":`) {
		t.Fatalf("put: %d %v %s", r.status, r.header, r.body)
	}
	etag := r.header.Get("ETag")
	r = h.do("GET", "/v1/kv/app/greeting", nil)
	if r.status != 200 || r.body != "hi" || r.header.Get("ETag") != etag || r.header.Get(HeaderKVExpiresAt) == "" ||
		r.header.Get("Content-Type") != "application/octet-stream" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("get: %d %v %q", r.status, r.header, r.body)
	}
	if r := h.do("HEAD", "/v1/kv/app/greeting", nil); r.status != 200 || r.body != "" || r.header.Get("ETag") != etag {
		t.Fatalf("head: %d %v", r.status, r.header)
	}
	// If-Match with a stale ETag and If-None-Match: * conflict and name the
	// current version.
	r = h.do("PUT", "/v1/kv/app/greeting", strings.NewReader("x"), "If-Match", `"1"`)
	if r.status != 409 || r.apiErr(t).Code != CodeKVConflict || `"`+r.header.Get(HeaderKVVersion)+`"` != etag {
		t.Fatalf("stale If-Match: %d %v %s", r.status, r.header, r.body)
	}
	if r := h.do("PUT", "/v1/kv/app/greeting", strings.NewReader("x"), "If-None-Match", "*"); r.status != 409 {
		t.Fatalf("If-None-Match on an existing key: %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/kv/app/greeting", strings.NewReader("x"), "If-Match", etag); r.status != 200 {
		t.Fatalf("If-Match with the current ETag: %d %s", r.status, r.body)
	}
	if r := h.do("DELETE", "/v1/kv/app/greeting", nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/kv/app", nil); r.status != 200 || r.body != `{"namespace":"app","share":[],"keys":[]}`+"\n" {
		t.Fatalf("empty list: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		method, path, body string
		hdr                []string
		status             int
		code, msg          string
	}{
		{"GET", "/v1/kv/app/missing", "", nil, 404, CodeKeyNotFound, "key not found"},
		{"GET", "/v1/kv/App/k", "", nil, 400, CodeInvalidName, "namespace"},
		{"GET", "/v1/kv/app/", "", nil, 400, CodeInvalidKey, "GET /v1/kv/app"},
		{"GET", "/v1/kv/app/a%00b", "", nil, 400, CodeInvalidKey, "NUL"},
		{"GET", "/v1/kv/app/" + strings.Repeat("k", 513), "", nil, 400, CodeInvalidKey, "more than the limit of 512"},
		{"GET", "/v1/kv/app/k?consistency=eventual", "", nil, 400, CodeInvalid, "linearizable"},
		{"PUT", "/v1/kv/app/k", strings.Repeat("v", 65), nil, 413, CodeValueTooLarge, "up to 64 bytes"},
		{"PUT", "/v1/kv/app/k?ttl=soon", "v", nil, 400, CodeInvalid, "ttl"},
		{"PUT", "/v1/kv/app/k?ttl=-1s", "v", nil, 400, CodeInvalid, "positive duration"},
		{"PUT", "/v1/kv/app/k?cas=x", "v", nil, 400, CodeInvalid, "cas"},
		{"PUT", "/v1/kv/app/k?cas=1", "v", []string{"If-None-Match", "*"}, 400, CodeInvalid, "one condition"},
		{"PUT", "/v1/kv/app/k", "v", []string{"If-None-Match", `"3"`}, 400, CodeInvalid, "only *"},
		{"PUT", "/v1/kv/app/k", "v", []string{"If-Match", "nope"}, 400, CodeInvalid, "ETag"},
		{"PUT", "/v1/kv/app/k?cas=5", "v", nil, 409, CodeKVConflict, "expected version 5, found no key"},
		{"DELETE", "/v1/kv/app/k?ttl=1s", "", nil, 400, CodeInvalid, "no ttl"},
		{"GET", "/v1/kv/app?limit=0", "", nil, 400, CodeInvalid, "limit"},
		{"GET", "/v1/kv/app?limit=1001", "", nil, 400, CodeInvalid, "1 to 1000"},
		{"GET", "/v1/kv/app?cursor=!!", "", nil, 400, CodeInvalid, "cursor"},
		{"PUT", "/v1/kv/app", `{"share":["app"]}`, nil, 400, CodeInvalid, "own function"},
		{"PUT", "/v1/kv/app", `{"shared":[]}`, nil, 400, CodeUnknownField, "shared"},
		{"POST", "/v1/kv/app/k", "", nil, 405, CodeMethodNotAllowed, "DELETE, GET, HEAD, PUT"},
		{"GET", "/v1/kv/app/k", "", []string{"Authorization", ""}, 401, CodeUnauthorized, "missing admin token"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := h.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr...)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if e := r.apiErr(t); e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error %+v, want %s with %q", e, tc.code, tc.msg)
			}
		})
	}
}

// The share list is [] in the JSON, never null: for a namespace with keys
// and no list, after {"share":[]} and {"share":null}, and for one never
// written (docs/api.md).
func TestAPIKVShareNeverNull(t *testing.T) {
	h := newKVHarness(t)
	if r := h.do("PUT", "/v1/kv/counter/hits", strings.NewReader("1")); r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	for _, tc := range []struct{ method, path, body, want string }{
		{"GET", "/v1/kv/counter", "", `"share":[]`},
		{"PUT", "/v1/kv/counter", `{"share":[]}`, `{"namespace":"counter","keys":1,"bytes":5,"share":[]}`},
		{"PUT", "/v1/kv/counter", `{"share":["worker"]}`, `"share":["worker"]`},
		{"PUT", "/v1/kv/counter", `{"share":null}`, `{"namespace":"counter","keys":1,"bytes":5,"share":[]}`},
		{"GET", "/v1/kv/counter", "", `"share":[]`},
		{"PUT", "/v1/kv/empty", `{"share":[]}`, `{"namespace":"empty","keys":0,"bytes":0,"share":[]}`},
		{"GET", "/v1/kv/never", "", `{"namespace":"never","share":[],"keys":[]}`},
	} {
		r := h.doJSON(tc.method, tc.path, tc.body)
		if r.status != 200 || !strings.Contains(r.body, tc.want) {
			t.Errorf("%s %s %s: %d %s, want %s", tc.method, tc.path, tc.body, r.status, r.body, tc.want)
		}
	}
}

// TestAPIKVNotEnabled: a registry without KV answers 501.
func TestAPIKVNotEnabled(t *testing.T) {
	h := newAPIHarness(t, nil)
	r := h.do("GET", "/v1/kv/app/k", nil)
	if r.status != http.StatusNotImplemented || r.apiErr(t).Code != CodeNotEnabled {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestAPIUncleanPathsRefused: a path with an empty, "." or ".." segment is
// refused with 400 before http.ServeMux can redirect it to its cleaned
// form, which a client following redirects sent on to another endpoint
// (`kv put "" counter` became a share-list write to namespace counter);
// the Go client refuses such names itself and never follows a redirect.
func TestAPIUncleanPathsRefused(t *testing.T) {
	h := newKVHarness(t)
	ctx := testCtx(t)
	if _, err := h.client.KVShare(ctx, "counter", []string{"worker"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/kv//counter", `{}`},
		{"PUT", "/v1/kv/./counter", `{"share":["intruder"]}`},
		{"DELETE", "/v1/kv/x/../counter", ``},
		{"POST", "/v1/functions/./rollback", `{}`},
		{"GET", "/v1/functions//versions", ``},
		{"GET", "/v1/functions/hello/.", ``},
	} {
		r := h.doJSON(tc.method, tc.path, tc.body)
		if r.status != http.StatusBadRequest || r.apiErr(t).Code != CodeBadRequest || r.header.Get("Location") != "" {
			t.Errorf("%s %s: %d Location=%q %s; want 400 %s and no redirect", tc.method, tc.path, r.status, r.header.Get("Location"), r.body, CodeBadRequest)
		}
	}
	for _, ns := range []string{"", ".", ".."} {
		if _, err := h.client.KVPut(ctx, ns, "counter", []byte(`{"share":["intruder"]}`), KVWriteOptions{}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("KVPut(%q, counter): %v, want invalid", ns, err)
		}
		if _, err := h.client.KVShare(ctx, ns, []string{"intruder"}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("KVShare(%q): %v, want invalid", ns, err)
		}
		if _, err := h.client.Versions(ctx, ns); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Versions(%q): %v, want invalid", ns, err)
		}
		if _, err := h.client.Rollback(ctx, ns, 0); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Rollback(%q): %v, want invalid", ns, err)
		}
	}
	list, err := h.client.KVList(ctx, "counter", KVListOptions{})
	if err != nil || len(list.Share) != 1 || list.Share[0] != "worker" {
		t.Fatalf("counter's share list after the refused requests: %+v %v, want [worker]", list.Share, err)
	}

	// A redirect (from a proxy, or a node of an older version) is reported,
	// not followed.
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere/", func(http.ResponseWriter, *http.Request) { followed.Add(1) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere/", http.StatusTemporaryRedirect)
	})
	redirecting := httptest.NewServer(mux)
	t.Cleanup(redirecting.Close)
	_, err = NewClient(redirecting.URL, testToken, redirecting.Client()).KVShare(ctx, "counter", nil)
	if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "/elsewhere/") || followed.Load() != 0 {
		t.Fatalf("client against a redirect: %v (followed %d times), want an error naming the redirect, not followed", err, followed.Load())
	}
}
