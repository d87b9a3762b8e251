package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// Client talks to a node's admin API. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the admin API at baseURL (e.g.
// "http://127.0.0.1:PORT", the node's API listener) authenticating with
// token. A nil httpClient
// means http.DefaultClient; bound calls with their contexts. The client
// never follows a redirect (the API answers none): following one would
// send the request, method and body included, where the node did not ask
// for it, so a redirect is an error that says where it pointed.
func NewClient(baseURL, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	hc := *httpClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: &hc}
}

// segment returns s escaped as one segment of an API path, or an error
// for a value no endpoint names: empty, "." or "..", which the URL would
// lose (what is a KV key has its own escaping in kvPath).
func segment(what, s string) (string, error) {
	switch s {
	case "", ".", "..":
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeInvalidName, Message: fmt.Sprintf("%s %q is not valid", what, s)}
	}
	return url.PathEscape(s), nil
}

// DeployOptions tune Client.Deploy.
type DeployOptions struct {
	// Wait asks the node to answer only once it serves the new version.
	// The zero value does not wait: the deploy returns once committed.
	Wait bool
	// WaitTimeout bounds the wait; zero means the node's default (60 s).
	WaitTimeout time.Duration
	// Progress, if set, is called as the module uploads with the bytes
	// sent so far and the total; calls are sequential, never decrease and
	// the last has sent == total. When the node already has the module it
	// is called once with (total, total), unless Stored is set.
	Progress func(sent, total int64)
	// Stored, if set, is called instead of Progress when the node already
	// has the module, so nothing is uploaded, with its size.
	Stored func(total int64)
}

// Deploy uploads module (skipped when the node already has its sha256)
// and deploys it as a new version of name. spec's SHA256 and Size are set
// from module. A module that is an io.ReadSeeker (an *os.File) streams
// from its current offset without being held in memory. Errors from the
// node are *APIError.
func (c *Client) Deploy(ctx context.Context, name string, module io.Reader, spec storage.Spec, opts DeployOptions) (storage.Version, error) {
	if err := storage.ValidateName(name); err != nil {
		return storage.Version{}, err
	}
	body, sha, size, err := hashModule(module)
	if err != nil {
		return storage.Version{}, err
	}
	if size == 0 {
		return storage.Version{}, fmt.Errorf("%w: the module is empty (0 bytes); build the function first (a WebAssembly module starts with \\0asm)", storage.ErrInvalid)
	}
	spec.SHA256, spec.Size = sha, size
	have, err := c.HasBlob(ctx, sha)
	if err != nil {
		return storage.Version{}, err
	}
	if !have {
		if _, err := c.PutBlob(ctx, sha, body, size, opts.Progress); err != nil {
			return storage.Version{}, err
		}
	} else if opts.Stored != nil {
		opts.Stored(size)
	} else if opts.Progress != nil {
		opts.Progress(size, size)
	}
	req := DeployRequest{Spec: spec, Wait: &opts.Wait, WaitTimeout: storage.Duration(opts.WaitTimeout)}
	var v storage.Version
	path := "/v1/functions/" + url.PathEscape(name)
	err = c.do(ctx, http.MethodPost, path, req, &v)
	if have && errors.Is(err, storage.ErrBlobNotFound) {
		// The blob went away between HEAD and POST (a cleanup): body was
		// not read, so upload it and try once more. Progress already
		// reported the total and must not go back.
		if _, err := c.PutBlob(ctx, sha, body, size, nil); err != nil {
			return storage.Version{}, err
		}
		err = c.do(ctx, http.MethodPost, path, req, &v)
	}
	return v, err
}

// hashModule returns a reader positioned at the module's start, its sha256
// and size.
func hashModule(module io.Reader) (io.Reader, string, int64, error) {
	h := sha256.New()
	if rs, ok := module.(io.ReadSeeker); ok {
		start, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, "", 0, fmt.Errorf("read module: %w", err)
		}
		n, err := io.Copy(h, rs)
		if err != nil {
			return nil, "", 0, fmt.Errorf("read module: %w", err)
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return nil, "", 0, fmt.Errorf("read module: %w", err)
		}
		// Send exactly the bytes hashed; a file that changes meanwhile
		// fails the node's hash check.
		return io.LimitReader(rs, n), hex.EncodeToString(h.Sum(nil)), n, nil
	}
	b, err := io.ReadAll(module)
	if err != nil {
		return nil, "", 0, fmt.Errorf("read module: %w", err)
	}
	h.Write(b)
	return bytes.NewReader(b), hex.EncodeToString(h.Sum(nil)), int64(len(b)), nil
}

// HasBlob reports whether the node stores the module with this sha256.
func (c *Client) HasBlob(ctx context.Context, sha string) (bool, error) {
	err := c.do(ctx, http.MethodHead, "/v1/blobs/"+url.PathEscape(sha), nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// PutBlob uploads size bytes from r as the module with this sha256,
// calling progress (if not nil) as it goes.
func (c *Client) PutBlob(ctx context.Context, sha string, r io.Reader, size int64, progress func(sent, total int64)) (BlobInfo, error) {
	if progress != nil {
		r = &progressReader{r: r, total: size, fn: progress}
	}
	req, err := c.newRequest(ctx, http.MethodPut, "/v1/blobs/"+url.PathEscape(sha), io.NopCloser(r))
	if err != nil {
		return BlobInfo{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/wasm")
	// Lets the node refuse an oversized module before the body is sent.
	req.Header.Set("Expect", "100-continue")
	var info BlobInfo
	return info, c.send(req, &info)
}

// Functions lists every function with its active version.
func (c *Client) Functions(ctx context.Context) ([]FunctionSummary, error) {
	var list FunctionList
	err := c.do(ctx, http.MethodGet, "/v1/functions", nil, &list)
	return list.Functions, err
}

// Function returns name with every version; env values are "".
func (c *Client) Function(ctx context.Context, name string) (storage.Function, error) {
	var f storage.Function
	seg, err := segment("function name", name)
	if err != nil {
		return f, err
	}
	err = c.do(ctx, http.MethodGet, "/v1/functions/"+seg, nil, &f)
	return f, err
}

// Versions returns name's versions, oldest first, the active one marked.
func (c *Client) Versions(ctx context.Context, name string) ([]VersionInfo, error) {
	var list VersionList
	seg, err := segment("function name", name)
	if err != nil {
		return nil, err
	}
	err = c.do(ctx, http.MethodGet, "/v1/functions/"+seg+"/versions", nil, &list)
	return list.Versions, err
}

// Remove deletes name and all its versions.
func (c *Client) Remove(ctx context.Context, name string) error {
	seg, err := segment("function name", name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/functions/"+seg, nil, nil)
}

// Rollback makes version to of name active again (0: the previously active
// version), waits until the node serves it, and returns it.
func (c *Client) Rollback(ctx context.Context, name string, to int64) (storage.Version, error) {
	var v storage.Version
	seg, err := segment("function name", name)
	if err != nil {
		return v, err
	}
	err = c.do(ctx, http.MethodPost, "/v1/functions/"+seg+"/rollback", RollbackRequest{Version: to}, &v)
	return v, err
}

// Status describes the node.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Members returns the cluster's members with their Raft roles.
func (c *Client) Members(ctx context.Context) ([]MemberInfo, error) {
	var list MemberList
	err := c.do(ctx, http.MethodGet, "/v1/members", nil, &list)
	return list.Members, err
}

// Backup streams a backup of the cluster's registry, KV and modules to w.
// The node first catches up with the leader, so the backup holds every
// write acknowledged before the call; without a leader it fails (503).
func (c *Client) Backup(ctx context.Context, w io.Writer) error {
	return c.backup(ctx, w, "/v1/backup")
}

// BackupLocal is Backup of the node's state as it is, without catching up
// with a leader (?consistency=local): it may miss the latest writes, and
// works in a cluster that lost its quorum.
func (c *Client) BackupLocal(ctx context.Context, w io.Writer) error {
	return c.backup(ctx, w, "/v1/backup?consistency=local")
}

func (c *Client) backup(ctx context.Context, w io.Writer, path string) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("backup: the node at %s closed the connection before it answered (%w): the node's log says why", c.base, err)
	}
	if err != nil {
		return fmt.Errorf("cannot reach the node's API at %s: %w", c.base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		return readAPIError(resp)
	}
	dst := &writeErr{w: w}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		if dst.err != nil {
			return fmt.Errorf("backup: writing it here: %w", err)
		}
		// The node had answered 200 and started the tar: it can only
		// stop the stream to say something went wrong.
		return fmt.Errorf("backup: the node's stream ended early (%w): the backup is incomplete; the node's log says why (a module that failed its hash check is named there, and moved aside: a redeploy of the function, or its copy on a peer, brings it back)", err)
	}
	return nil
}

// writeErr remembers the first error writing w, to tell a failing
// destination from a failing source after io.Copy.
type writeErr struct {
	w   io.Writer
	err error
}

func (e *writeErr) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// Restore replaces the cluster's state with a backup. Any node takes it:
// a follower forwards it to the leader.
func (c *Client) Restore(ctx context.Context, r io.Reader) error {
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/restore", r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	return c.send(req, nil)
}

// Healthz returns nil when the node's API answers /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Readyz returns nil when the node is ready to serve, else an *APIError
// with the reason.
func (c *Client) Readyz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil)
}

// do sends in (JSON, when not nil) and decodes a 2xx answer into out (when
// not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("gojinn API request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// send does req and decodes the answer.
func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readAPIError(resp)
	}
	if out == nil {
		// Drain so the connection can be reused; a failure only loses that.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode the node's answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// readAPIError builds the *APIError of a non-2xx answer, also when the
// answer is not the API's JSON (a proxy's error page, a HEAD).
func readAPIError(resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env struct {
		Error *APIError `json:"error"`
	}
	var ae *APIError
	if json.Unmarshal(b, &env) == nil && env.Error != nil && env.Error.Code != "" {
		ae = env.Error
	} else {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		ae = &APIError{
			Code:    "http_" + strconv.Itoa(resp.StatusCode),
			Message: fmt.Sprintf("the node answered %s: %s", resp.Status, truncate(msg, 300)),
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			ae.Message = fmt.Sprintf("the node answered %s, a redirect to %q, which the admin API never sends: check the node's address (--addr, GOJINN_ADDR); nothing was followed", resp.Status, resp.Header.Get("Location"))
		case http.StatusUnauthorized:
			ae.Code, ae.Message = CodeUnauthorized, "the admin token is missing or not valid for this node"
		case http.StatusNotFound:
			ae.Code = CodeNotFound
		}
	}
	ae.Status = resp.StatusCode
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		ae.RetryAfter = time.Duration(s) * time.Second
	}
	return ae
}

// progressReader reports bytes read to fn.
type progressReader struct {
	r     io.Reader
	sent  int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.sent += int64(n)
		p.fn(p.sent, p.total)
	}
	return n, err
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// RemoveMember force-leaves the member name (its node ID), which must be
// gone for good: it leaves the Raft configuration and every node's
// members list (DELETE /v1/members/{name}). Any node takes it. The node
// refuses a live member (409 member_alive), an unknown name (404
// member_not_found) and the only voter (409 last_voter).
func (c *Client) RemoveMember(ctx context.Context, name string) (ForceLeaveResult, error) {
	var res ForceLeaveResult
	seg, err := segment("member name", name)
	if err != nil {
		return res, err
	}
	err = c.do(ctx, http.MethodDelete, "/v1/members/"+seg, nil, &res)
	return res, err
}
