package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// KVReadOptions qualify Client.KVGet.
type KVReadOptions struct {
	// Consistency is ConsistencyLocal (the default) or
	// ConsistencyLinearizable.
	Consistency Consistency
}

// KVListOptions select a page for Client.KVList.
type KVListOptions struct {
	// Prefix restricts the page to keys starting with it.
	Prefix string
	// Limit is the page size; zero means the node's default (100), at
	// most MaxKVListLimit.
	Limit int
	// Cursor is the previous page's KVListResponse.Cursor; empty for the
	// first page.
	Cursor string
	// Consistency as in KVReadOptions.
	Consistency Consistency
}

// KVGet returns the value, version and expiry of key in namespace ns.
// Errors are *APIError; they also match storage.ErrKVNotFound and the
// other KV sentinels with errors.Is.
func (c *Client) KVGet(ctx context.Context, ns, key string, opts KVReadOptions) (storage.KVEntry, error) {
	if err := checkNamespace(ns); err != nil {
		return storage.KVEntry{}, err
	}
	path := kvPath(ns, key)
	if opts.Consistency != "" {
		path += "?consistency=" + url.QueryEscape(string(opts.Consistency))
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return storage.KVEntry{}, err
	}
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return storage.KVEntry{}, fmt.Errorf("cannot reach the node's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return storage.KVEntry{}, kvClientError(resp, ns, key, nil)
	}
	value, err := io.ReadAll(resp.Body)
	if err != nil {
		return storage.KVEntry{}, fmt.Errorf("GET %s: read the value: %w", req.URL.Path, err)
	}
	e := storage.KVEntry{Key: key, Value: value}
	if e.Version, err = strconv.ParseUint(resp.Header.Get(HeaderKVVersion), 10, 64); err != nil {
		return storage.KVEntry{}, fmt.Errorf("GET %s: the node sent no %s header: %w", req.URL.Path, HeaderKVVersion, err)
	}
	if s := resp.Header.Get(HeaderKVExpiresAt); s != "" {
		if e.ExpiresAt, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return storage.KVEntry{}, fmt.Errorf("GET %s: %s: %w", req.URL.Path, HeaderKVExpiresAt, err)
		}
	}
	return e, nil
}

// KVPut sets key in namespace ns to value and returns its new version.
// opts.TTL makes it expire; opts.CAS makes it conditional (a mismatch is a
// *storage.KVConflictError carrying the current version).
func (c *Client) KVPut(ctx context.Context, ns, key string, value []byte, opts KVWriteOptions) (uint64, error) {
	var out KVPutResponse
	err := c.kvWrite(ctx, http.MethodPut, ns, key, value, opts, &out)
	return out.Version, err
}

// KVDelete deletes key in namespace ns; a missing key is not an error.
// opts.CAS makes it conditional.
func (c *Client) KVDelete(ctx context.Context, ns, key string, opts KVWriteOptions) error {
	return c.kvWrite(ctx, http.MethodDelete, ns, key, nil, opts, nil)
}

// kvWrite sends a PUT or DELETE of a key and decodes a JSON answer into out.
func (c *Client) kvWrite(ctx context.Context, method, ns, key string, value []byte, opts KVWriteOptions, out any) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	q := url.Values{}
	if opts.TTL != 0 {
		q.Set("ttl", opts.TTL.String())
	}
	if opts.CAS != nil {
		q.Set("cas", strconv.FormatUint(*opts.CAS, 10))
	}
	path := kvPath(ns, key)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var body io.Reader
	if method == http.MethodPut {
		body = bytes.NewReader(value)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if method == http.MethodPut {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return kvClientError(resp, ns, key, opts.CAS)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode the node's answer: %w", method, req.URL.Path, err)
	}
	return nil
}

// KVList returns one page of the keys of namespace ns (values are fetched
// with KVGet). Pass the answer's Cursor to get the next page.
func (c *Client) KVList(ctx context.Context, ns string, opts KVListOptions) (KVListResponse, error) {
	if err := checkNamespace(ns); err != nil {
		return KVListResponse{}, err
	}
	q := url.Values{}
	for k, v := range map[string]string{"prefix": opts.Prefix, "cursor": opts.Cursor, "consistency": string(opts.Consistency)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	path := "/v1/kv/" + url.PathEscape(ns)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out KVListResponse
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, kvSentinel(err)
}

// KVShare replaces the list of functions, besides its owner, that may
// read and write namespace ns, and returns the namespace as it now is.
func (c *Client) KVShare(ctx context.Context, ns string, share []string) (storage.KVNamespaceInfo, error) {
	if share == nil {
		share = []string{}
	}
	var out storage.KVNamespaceInfo
	if err := checkNamespace(ns); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodPut, "/v1/kv/"+url.PathEscape(ns), KVShareRequest{Share: share}, &out)
	return out, kvSentinel(err)
}

// checkNamespace refuses, before anything is sent, a namespace the node
// would refuse, as the node does (400 invalid_name, which also matches
// storage.ErrInvalid): an empty or "." one would otherwise change the
// request's path and so its meaning.
func checkNamespace(ns string) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return &APIError{Status: http.StatusBadRequest, Code: CodeInvalidName, Message: err.Error()}
	}
	return nil
}

// kvAPIError is an *APIError from a KV endpoint that also matches the
// storage sentinel of its code (and, for a conflict, is a
// *storage.KVConflictError).
type kvAPIError struct {
	*APIError
	also error
}

// Unwrap returns the API error and the storage error it stands for.
func (e *kvAPIError) Unwrap() []error { return []error{e.APIError, e.also} }

// kvClientError reads the error answer of a key request.
func kvClientError(resp *http.Response, ns, key string, cas *uint64) error {
	ae := readAPIError(resp)
	if ae.Code == CodeKVConflict {
		ce := &storage.KVConflictError{Namespace: ns, Key: key}
		if cas != nil {
			ce.Expected = *cas
		}
		// A missing header leaves Current 0; the message still has it.
		ce.Current, _ = strconv.ParseUint(resp.Header.Get(HeaderKVVersion), 10, 64)
		return &kvAPIError{APIError: ae, also: ce}
	}
	return kvSentinel(ae)
}

// kvSentinel wraps an *APIError of the KV endpoints so errors.Is matches
// its storage sentinel.
func kvSentinel(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	var also error
	switch ae.Code {
	case CodeKeyNotFound:
		also = storage.ErrKVNotFound
	case CodeValueTooLarge:
		also = storage.ErrKVTooLarge
	case CodeKVQuota:
		also = storage.ErrKVQuota
	case CodeKVConflict:
		also = storage.ErrKVConflict
	case CodeInvalidKey:
		also = storage.ErrInvalid
	default:
		return err
	}
	return &kvAPIError{APIError: ae, also: also}
}
