package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// KV is what the admin API needs of the replicated KV store. *Store
// satisfies it; the API serves /v1/kv when APIConfig.Registry implements
// it too, and answers 501 otherwise.
type KV interface {
	// KVLimits returns the key and value limits writes must respect.
	KVLimits() storage.KVLimits
	// KVGet returns a key (storage.ErrKVNotFound when absent or expired).
	KVGet(ctx context.Context, ns, key string, c Consistency) (storage.KVEntry, error)
	// KVList returns a page of keys in key order.
	KVList(ctx context.Context, ns string, opts storage.KVListOptions, c Consistency) (storage.KVPage, error)
	// KVNamespace describes a namespace from local state.
	KVNamespace(ns string) storage.KVNamespaceInfo
	// KVPut commits a put and returns the key's new version.
	KVPut(ctx context.Context, ns, key string, value []byte, opts KVWriteOptions) (uint64, error)
	// KVDelete commits a delete; a missing key is not an error.
	KVDelete(ctx context.Context, ns, key string, opts KVWriteOptions) error
	// KVShare replaces a namespace's share list.
	KVShare(ctx context.Context, ns string, share []string) error
}

var _ KV = (*Store)(nil)

// Error codes of the KV endpoints (see the Code* constants in errors.go).
const (
	CodeKeyNotFound   = "key_not_found"   // 404: no such key, or it expired
	CodeKVConflict    = "kv_conflict"     // 409: compare-and-set mismatch; X-Gojinn-KV-Version has the current version
	CodeValueTooLarge = "value_too_large" // 413: value over the node's limit
	CodeInvalidKey    = "invalid_key"     // 400: empty, too long, NUL or not UTF-8
	CodeKVQuota       = "kv_quota"        // 507: the namespace holds as many keys as allowed
	CodeNotEnabled    = "not_enabled"     // 501: this node's registry has no KV store
)

// Headers of the KV endpoints.
const (
	// HeaderKVVersion carries a key's version on reads and writes, and the
	// current version with a 409 kv_conflict.
	HeaderKVVersion = "X-Gojinn-KV-Version"
	// HeaderKVExpiresAt carries a key's expiry (RFC 3339) when it has one.
	HeaderKVExpiresAt = "X-Gojinn-KV-Expires-At"
)

// Bounds of a KV listing page.
const (
	defaultKVListLimit = 100
	// MaxKVListLimit is the largest page GET /v1/kv/{namespace} returns.
	MaxKVListLimit = 1000
)

// KVKeyInfo is one key of a listing.
type KVKeyInfo struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	// Size is the value's length in bytes.
	Size int `json:"size"`
	// ExpiresAt is when the key expires; absent when never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// KVListResponse is the body of GET /v1/kv/{namespace}.
type KVListResponse struct {
	Namespace string `json:"namespace"`
	// Share lists the functions besides the owner that may use the
	// namespace.
	Share []string `json:"share"`
	// Keys are in key order.
	Keys []KVKeyInfo `json:"keys"`
	// Cursor, when set, fetches the next page (?cursor=); absent on the
	// last page.
	Cursor string `json:"cursor,omitempty"`
}

// KVPutResponse is the body of a successful PUT /v1/kv/{namespace}/{key}.
type KVPutResponse struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Version   uint64 `json:"version"`
}

// KVShareRequest is the body of PUT /v1/kv/{namespace}.
type KVShareRequest struct {
	// Share lists the functions besides the owner that may read and write
	// the namespace; empty makes it private.
	Share []string `json:"share"`
}

// kvRoutes are the KV endpoints.
func (a *api) kvRoutes() []apiRoute {
	return []apiRoute{
		{"GET", "/v1/kv/{namespace}", true, a.kvList},
		{"PUT", "/v1/kv/{namespace}", true, a.kvSetShare},
		{"GET", "/v1/kv/{namespace}/{key...}", true, a.kvGet},
		{"PUT", "/v1/kv/{namespace}/{key...}", true, a.kvPut},
		{"DELETE", "/v1/kv/{namespace}/{key...}", true, a.kvDelete},
	}
}

// kv returns the KV store and the request's namespace and key (when the
// path has one), validated.
func (a *api) kv(r *http.Request, withKey bool) (KV, string, string, error) {
	kv, ok := a.cfg.Registry.(KV)
	if !ok {
		return nil, "", "", apiErrorf(http.StatusNotImplemented, CodeNotEnabled, "this node's registry has no KV store")
	}
	ns := r.PathValue("namespace")
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, "", "", apiErrorf(http.StatusBadRequest, CodeInvalidName, "%v; namespaces are named after functions", err)
	}
	if !withKey {
		return kv, ns, "", nil
	}
	key := r.PathValue("key")
	if key == "" {
		return nil, "", "", apiErrorf(http.StatusBadRequest, CodeInvalidKey, "the key is empty; list a namespace with GET /v1/kv/%s", ns)
	}
	if err := storage.ValidateKVKey(key, kv.KVLimits().MaxKeyBytes); err != nil {
		return nil, "", "", apiErrorf(http.StatusBadRequest, CodeInvalidKey, "%v; percent-encode the key in the URL (the Go client does)", err)
	}
	return kv, ns, key, nil
}

// kvError maps the KV store's errors to API errors; others pass on to
// toAPIError. A conflict also sets HeaderKVVersion to the current version.
func kvError(w http.ResponseWriter, err error) error {
	var ce *storage.KVConflictError
	switch {
	case errors.As(err, &ce):
		w.Header().Set(HeaderKVVersion, strconv.FormatUint(ce.Current, 10))
		return apiErrorf(http.StatusConflict, CodeKVConflict, "%v", err)
	case errors.Is(err, storage.ErrKVNotFound):
		return apiErrorf(http.StatusNotFound, CodeKeyNotFound, "%v", err)
	case errors.Is(err, storage.ErrKVTooLarge):
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeValueTooLarge, "%v", err)
	case errors.Is(err, storage.ErrKVQuota):
		return apiErrorf(http.StatusInsufficientStorage, CodeKVQuota, "%v", err)
	case errors.Is(err, storage.ErrInvalid):
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	return err
}

// consistency parses ?consistency=.
func consistency(r *http.Request) (Consistency, error) {
	c, err := ParseConsistency(r.URL.Query().Get("consistency"))
	if err != nil {
		return "", apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	return c, nil
}

// setVersionHeaders describes e in the response headers.
func setVersionHeaders(h http.Header, e storage.KVEntry) {
	v := strconv.FormatUint(e.Version, 10)
	h.Set("ETag", `"`+v+`"`)
	h.Set(HeaderKVVersion, v)
	if !e.ExpiresAt.IsZero() {
		h.Set(HeaderKVExpiresAt, e.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
}

// kvGet answers GET /v1/kv/{namespace}/{key...}: the raw value.
func (a *api) kvGet(w http.ResponseWriter, r *http.Request) error {
	kv, ns, key, err := a.kv(r, true)
	if err != nil {
		return err
	}
	c, err := consistency(r)
	if err != nil {
		return err
	}
	e, err := kv.KVGet(r.Context(), ns, key, c)
	if err != nil {
		return kvError(w, err)
	}
	setVersionHeaders(w.Header(), e)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Value) // a client that went away has nothing to learn
	return nil
}

// writeOptions reads ?ttl=, ?cas=, If-Match and If-None-Match.
func writeOptions(r *http.Request, allowTTL bool) (KVWriteOptions, error) {
	var opts KVWriteOptions
	q := r.URL.Query()
	if s := q.Get("ttl"); s != "" {
		if !allowTTL {
			return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "a delete takes no ttl")
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxKVTTL {
			return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "ttl %q: use a positive duration such as 30s or 24h, at most %v", s, maxKVTTL)
		}
		opts.TTL = d
	}
	var sources []string
	if s := q.Get("cas"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "cas %q: use the key's version, or 0 to create only if absent", s)
		}
		opts.CAS, sources = &v, append(sources, "?cas")
	}
	if s := r.Header.Get("If-Match"); s != "" {
		v, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(s, "W/"), `"`), 10, 64)
		if err != nil || v == 0 {
			return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "If-Match %q: send the ETag of a GET, e.g. \"42\"", s)
		}
		opts.CAS, sources = &v, append(sources, "If-Match")
	}
	if s := r.Header.Get("If-None-Match"); s != "" {
		if s != "*" {
			return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "If-None-Match %q: only * (create only if absent) is supported", s)
		}
		var zero uint64
		opts.CAS, sources = &zero, append(sources, "If-None-Match")
	}
	if len(sources) > 1 {
		return opts, apiErrorf(http.StatusBadRequest, CodeInvalid, "%s: give one condition", strings.Join(sources, " and "))
	}
	return opts, nil
}

// kvPut answers PUT /v1/kv/{namespace}/{key...}: the body is the value.
func (a *api) kvPut(w http.ResponseWriter, r *http.Request) error {
	kv, ns, key, err := a.kv(r, true)
	if err != nil {
		return err
	}
	opts, err := writeOptions(r, true)
	if err != nil {
		return err
	}
	limit := kv.KVLimits().MaxValueBytes
	tooLarge := func(n string) error {
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeValueTooLarge,
			"the value is %s bytes; this node accepts values up to %d bytes (keep large data in a module or outside gojinn)", n, limit)
	}
	if r.ContentLength > int64(limit) {
		return tooLarge(strconv.FormatInt(r.ContentLength, 10))
	}
	value, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "reading the value: %v", err)
	}
	if len(value) > limit {
		return tooLarge("more than " + strconv.Itoa(limit))
	}
	v, err := kv.KVPut(r.Context(), ns, key, value, opts)
	if err != nil {
		return kvError(w, err)
	}
	setVersionHeaders(w.Header(), storage.KVEntry{Version: v})
	a.writeJSON(w, http.StatusOK, KVPutResponse{Namespace: ns, Key: key, Version: v})
	return nil
}

// kvDelete answers DELETE /v1/kv/{namespace}/{key...}.
func (a *api) kvDelete(w http.ResponseWriter, r *http.Request) error {
	kv, ns, key, err := a.kv(r, true)
	if err != nil {
		return err
	}
	opts, err := writeOptions(r, false)
	if err != nil {
		return err
	}
	if err := kv.KVDelete(r.Context(), ns, key, opts); err != nil {
		return kvError(w, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// kvList answers GET /v1/kv/{namespace}?prefix=&limit=&cursor=.
func (a *api) kvList(w http.ResponseWriter, r *http.Request) error {
	kv, ns, _, err := a.kv(r, false)
	if err != nil {
		return err
	}
	c, err := consistency(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	opts := storage.KVListOptions{Prefix: q.Get("prefix"), Limit: defaultKVListLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxKVListLimit {
			return apiErrorf(http.StatusBadRequest, CodeInvalid, "limit %q: use 1 to %d (default %d)", s, MaxKVListLimit, defaultKVListLimit)
		}
		opts.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		after, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(after) == 0 {
			return apiErrorf(http.StatusBadRequest, CodeInvalid, "cursor %q is not one this API returned; pass the cursor of the previous page unchanged", truncate(s, 60))
		}
		opts.After = string(after)
	}
	page, err := kv.KVList(r.Context(), ns, opts, c)
	if err != nil {
		return kvError(w, err)
	}
	resp := KVListResponse{Namespace: ns, Share: kv.KVNamespace(ns).Share, Keys: make([]KVKeyInfo, len(page.Entries))}
	for i, e := range page.Entries {
		resp.Keys[i] = KVKeyInfo{Key: e.Key, Version: e.Version, Size: len(e.Value), ExpiresAt: e.ExpiresAt}
	}
	if page.More {
		resp.Cursor = base64.RawURLEncoding.EncodeToString([]byte(page.Entries[len(page.Entries)-1].Key))
	}
	a.writeJSON(w, http.StatusOK, resp)
	return nil
}

// kvSetShare answers PUT /v1/kv/{namespace}: replace the share list.
func (a *api) kvSetShare(w http.ResponseWriter, r *http.Request) error {
	kv, ns, _, err := a.kv(r, false)
	if err != nil {
		return err
	}
	var req KVShareRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := storage.ValidateKVShare(ns, req.Share); err != nil {
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	if err := kv.KVShare(r.Context(), ns, req.Share); err != nil {
		return kvError(w, err)
	}
	a.log.Info("kv namespace share list set", "namespace", ns, "share", fmt.Sprint(req.Share))
	a.writeJSON(w, http.StatusOK, kv.KVNamespace(ns))
	return nil
}

// kvPath is the URL path of a key: the namespace and the key
// percent-encoded as one segment each, with '.' encoded too so that no key
// looks like a "." or ".." segment to path cleaning.
func kvPath(ns, key string) string {
	return "/v1/kv/" + url.PathEscape(ns) + "/" + strings.ReplaceAll(url.PathEscape(key), ".", "%2E")
}
