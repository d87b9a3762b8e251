package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/storage"
)

func TestAPIDeployErrors(t *testing.T) {
	checkErr := errors.New(`compile: section 10: invalid opcode 0xff; route example.com/x/* conflicts with function "other"`)
	h := newAPIHarness(t, func(c *APIConfig) {
		c.MaxModuleBytes = 4096
		c.Check = func(_ context.Context, name string, _ storage.Spec) error {
			switch name {
			case "bad-module":
				return checkErr
			case "at-shutdown":
				return fmt.Errorf("function at-shutdown: %w", runtime.ErrEngineClosed)
			}
			return nil
		}
	})
	sha := h.upload(testModule(100, 1))
	missing := sha256hex([]byte("not uploaded"))
	body := func(extra string) string {
		return fmt.Sprintf(`{"sha256":%q,"size":100%s}`, sha, extra)
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		code, msg        string
	}{
		{"empty body", "/v1/functions/a", "", 400, CodeBadRequest, "empty"},
		{"bad JSON", "/v1/functions/a", `{"sha256":`, 400, CodeBadRequest, "malformed JSON"},
		{"syntax error", "/v1/functions/a", `{"sha256" "x"}`, 400, CodeBadRequest, "at byte"},
		{"not an object", "/v1/functions/a", `[1]`, 400, CodeBadRequest, "must be a JSON object, not a JSON array"},
		{"null", "/v1/functions/a", `null`, 400, CodeBadRequest, "must be a JSON object, not JSON null"},
		{"a string", "/v1/functions/a", ` "x"`, 400, CodeBadRequest, "must be a JSON object, not a JSON string"},
		{"env key twice", "/v1/functions/a", body(`,"env":{"A":"x","B":"y","A":"z"}`), 400, CodeBadRequest, `the key "A" appears twice`},
		{"field twice", "/v1/functions/a", body(`,"mode":"pooled","mode":"isolated"`), 400, CodeBadRequest, `the key "mode" appears twice`},
		{"wrong type", "/v1/functions/a", `{"sha256":1}`, 400, CodeBadRequest, "field sha256: want string, got a JSON number"},
		{"wrong nested type", "/v1/functions/a", body(`,"routes":{"host":"x"}`), 400, CodeBadRequest, "field routes: want array, got a JSON object"},
		{"negative size type", "/v1/functions/a", body(`,"limits":{"memory_bytes":-1}`), 400, CodeBadRequest, "field limits.memory_bytes: want whole number"},
		{"size out of range", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":1e30}`, sha), 400, CodeBadRequest, "field size: want whole number from -9223372036854775808 to 9223372036854775807, got a JSON number"},
		{"bad duration", "/v1/functions/a", body(`,"limits":{"timeout":"soon"}`), 400, CodeBadRequest, `duration "soon"`},
		{"unknown field", "/v1/functions/a", body(`,"memory":5`), 400, CodeUnknownField, `"memory"`},
		{"unknown nested field", "/v1/functions/a", body(`,"limits":{"timeout_ms":5}`), 400, CodeUnknownField, `"timeout_ms"`},
		{"unknown route field", "/v1/functions/a", body(`,"routes":[{"hostname":"x"}]`), 400, CodeUnknownField, `"hostname"`},
		{"trailing data", "/v1/functions/a", body("") + `{}`, 400, CodeBadRequest, "after the JSON object"},
		{"huge body", "/v1/functions/a", body(`,"env":{"K":"` + strings.Repeat("x", maxJSONBytes) + `"}`), 413, CodeBodyTooLarge, "larger than"},
		{"bad name", "/v1/functions/Hello_World", body(""), 400, CodeInvalidName, "lower-case"},
		{"long name", "/v1/functions/" + strings.Repeat("a", 64), body(""), 400, CodeInvalidName, "1 to 63"},
		{"bad sha", "/v1/functions/a", `{"sha256":"ABC","size":1}`, 400, CodeInvalidSHA256, "64 lower-case hex"},
		{"no size", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q}`, sha), 400, CodeInvalid, "size 0"},
		{"module too large", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":5000}`, sha), 413, CodeModuleTooLarge, "up to 4096 bytes"},
		{"bad mode", "/v1/functions/a", body(`,"mode":"warm"`), 400, CodeInvalid, `spec.mode "warm"`},
		{"bad route", "/v1/functions/a", body(`,"routes":[{"path":"hello"}]`), 400, CodeInvalid, "must start with '/'"},
		{"bad env key", "/v1/functions/a", body(`,"env":{"A=B":"x"}`), 400, CodeInvalid, "spec.env key"},
		{"bad wait timeout", "/v1/functions/a", body(`,"wait_timeout":"1h"`), 400, CodeInvalid, "wait_timeout"},
		{"missing blob", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":10}`, missing), 409, CodeBlobMissing, "upload the module first"},
		{"check fails", "/v1/functions/bad-module", body(""), 422, CodeCheckFailed, checkErr.Error()},
		// A node shutting down checks nothing: 503, not a rejected module.
		{"node shutting down", "/v1/functions/at-shutdown", body(""), 503, CodeUnavailable, "this node is shutting down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.doJSON("POST", tc.path, tc.body)
			e := r.apiErr(t)
			if r.status != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("%d %+v; want %d %s containing %q", r.status, e, tc.status, tc.code, tc.msg)
			}
		})
	}
	if n := h.reg.writes(); n != 0 {
		t.Fatalf("failed deploys reached the registry %d times", n)
	}
	if fs := h.reg.Functions(); len(fs) != 0 {
		t.Fatalf("failed deploys left functions: %+v", fs)
	}
	if r := h.doJSON("POST", "/v1/functions/a", body("")); r.status != 201 {
		t.Fatalf("the valid deploy after the errors: %d %s", r.status, r.body)
	}
}

func TestAPIBlobErrors(t *testing.T) {
	h := newAPIHarness(t, func(c *APIConfig) { c.MaxModuleBytes = 4096 })
	mod := testModule(4096, 1)
	sha := sha256hex(mod)
	if r := h.do("HEAD", "/v1/blobs/"+sha, nil); r.status != 404 {
		t.Fatalf("HEAD before upload: %d", r.status)
	}
	if r := h.do("PUT", "/v1/blobs/"+sha, bytes.NewReader(mod)); r.status != 201 || !strings.Contains(r.body, `"size":4096`) {
		t.Fatalf("PUT at exactly the limit: %d %s", r.status, r.body)
	}
	if r := h.do("HEAD", "/v1/blobs/"+sha, nil); r.status != 200 {
		t.Fatalf("HEAD after upload: %d", r.status)
	}
	big := testModule(4097, 2)
	for _, tc := range []struct {
		name, sha string
		body      io.Reader
		status    int
		code, msg string
	}{
		{"oversized", sha256hex(big), bytes.NewReader(big), 413, CodeModuleTooLarge, "4096 bytes"},
		// No Content-Length: the limit is found while reading.
		{"oversized chunked", sha256hex(big), io.MultiReader(bytes.NewReader(big)), 413, CodeModuleTooLarge, "4096 bytes"},
		{"hash mismatch", sha256hex([]byte("other")), bytes.NewReader(mod), 422, CodeHashMismatch, "do not match"},
		{"bad sha", "xyz", bytes.NewReader(mod), 400, CodeInvalidSHA256, "64 lower-case hex"},
		{"upper-case sha", strings.ToUpper(sha), bytes.NewReader(mod), 400, CodeInvalidSHA256, "64 lower-case hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("PUT", "/v1/blobs/"+tc.sha, tc.body)
			e := r.apiErr(t)
			if r.status != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("%d %+v; want %d %s containing %q", r.status, e, tc.status, tc.code, tc.msg)
			}
			if h.blobs.Has(tc.sha) {
				t.Fatalf("a failed upload was stored")
			}
		})
	}
	if r := h.do("HEAD", "/v1/blobs/nothex", nil); r.status != 400 {
		t.Fatalf("HEAD with a bad sha: %d", r.status)
	}
	// The client reports the 413 as an APIError.
	_, err := h.client.Deploy(t.Context(), "big", bytes.NewReader(big), storage.Spec{}, DeployOptions{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeModuleTooLarge {
		t.Fatalf("client deploy of an oversized module: %v", err)
	}
}

func TestAPIFunctionErrors(t *testing.T) {
	h := newAPIHarness(t, nil)
	sha := h.upload(testModule(10, 1))
	if r := h.doJSON("POST", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":10}`, sha)); r.status != 201 {
		t.Fatalf("deploy: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/functions/nope", "", 404, CodeFunctionNotFound},
		{"GET", "/v1/functions/nope/versions", "", 404, CodeFunctionNotFound},
		{"DELETE", "/v1/functions/nope", "", 404, CodeFunctionNotFound},
		{"POST", "/v1/functions/nope/rollback", "", 404, CodeFunctionNotFound},
		{"POST", "/v1/functions/a/rollback", `{"version":9}`, 404, CodeVersionNotFound},
		{"POST", "/v1/functions/a/rollback", "", 404, CodeVersionNotFound}, // no previous version
		{"POST", "/v1/functions/a/rollback", `{"version":-1}`, 400, CodeInvalid},
		{"POST", "/v1/functions/a/rollback", `{"to":1}`, 400, CodeUnknownField},
		{"GET", "/v1/functions/A", "", 400, CodeInvalidName},
		{"DELETE", "/v1/functions/a_b", "", 400, CodeInvalidName},
	} {
		r := h.doJSON(tc.method, tc.path, tc.body)
		if e := r.apiErr(t); r.status != tc.status || e.Code != tc.code {
			t.Errorf("%s %s %s: %d %+v; want %d %s", tc.method, tc.path, tc.body, r.status, e, tc.status, tc.code)
		}
	}
	if r := h.do("DELETE", "/v1/functions/a", nil); r.status != 204 || r.body != "" {
		t.Fatalf("DELETE: %d %q", r.status, r.body)
	}
	if r := h.do("DELETE", "/v1/functions/a", nil); r.status != 404 {
		t.Fatalf("DELETE twice: %d", r.status)
	}
}

// A rollback to a version that does not exist says how to list the
// function's versions, naming the function rather than a "{name}"
// placeholder.
func TestAPIVersionNotFoundMessage(t *testing.T) {
	h := newAPIHarness(t, nil)
	sha := h.upload(testModule(10, 1))
	if r := h.doJSON("POST", "/v1/functions/hello", fmt.Sprintf(`{"sha256":%q,"size":10}`, sha)); r.status != 201 {
		t.Fatalf("deploy: %d %s", r.status, r.body)
	}
	for _, body := range []string{`{"version":9}`, ""} {
		r := h.doJSON("POST", "/v1/functions/hello/rollback", body)
		e := r.apiErr(t)
		if r.status != 404 || e.Code != CodeVersionNotFound || strings.Contains(e.Message, "{") ||
			!strings.Contains(e.Message, "gojinn-node functions versions hello") ||
			!strings.Contains(e.Message, "GET /v1/functions/hello/versions") {
			t.Errorf("rollback %s: %d %+v", body, r.status, e)
		}
	}
	// Where no name is known, the message still says what to run.
	e := toAPIError(fmt.Errorf("wrapped: %w", storage.ErrVersionNotFound))
	if strings.Contains(e.Message, "{") || !strings.Contains(e.Message, "gojinn-node functions versions NAME") {
		t.Errorf("generic version_not_found: %q", e.Message)
	}
}

func TestAPIUnavailableRetryAfter(t *testing.T) {
	for _, fail := range []error{
		raft.ErrNotLeader,
		fmt.Errorf("apply: %w", raft.ErrLeadershipLost),
		fmt.Errorf("forward to leader: %w", ErrUnavailable),
		fmt.Errorf("apply: %w", context.DeadlineExceeded),
	} {
		h := newAPIHarness(t, nil)
		sha := h.upload(testModule(10, 1))
		h.reg.setFail(fail)
		r := h.doJSON("POST", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":10}`, sha))
		if e := r.apiErr(t); r.status != 503 || e.Code != CodeUnavailable || r.header.Get("Retry-After") != "2" ||
			!strings.Contains(e.Message, "retry") {
			t.Errorf("%v: %d Retry-After=%q %+v", fail, r.status, r.header.Get("Retry-After"), e)
		}
	}
	h := newAPIHarness(t, nil)
	h.reg.setFail(errors.New("disk on fire"))
	if r := h.do("DELETE", "/v1/functions/a", nil); r.status != 500 || r.apiErr(t).Code != CodeInternal {
		t.Fatalf("other error: %d %s", r.status, r.body)
	}
}

func TestAPIWait(t *testing.T) {
	notServed := errors.New("node-2 still compiling hello v1")
	h := newAPIHarness(t, func(c *APIConfig) {
		c.WaitTimeout = 50 * time.Millisecond
		c.WaitReady = func(ctx context.Context, name string, version int64) error {
			switch name {
			case "slow":
				<-ctx.Done()
				return fmt.Errorf("%w (%w)", notServed, ctx.Err())
			case "broken":
				return errors.New("compile: out of memory")
			}
			return nil
		}
	})
	sha := h.upload(testModule(10, 1))
	spec := fmt.Sprintf(`{"sha256":%q,"size":10`, sha)
	r := h.doJSON("POST", "/v1/functions/slow", spec+`}`)
	e := r.apiErr(t)
	if r.status != 504 || e.Code != CodeWaitTimeout || !strings.Contains(e.Message, notServed.Error()) ||
		!strings.Contains(e.Message, "version 1 of \"slow\" is committed") {
		t.Fatalf("slow: %d %+v", r.status, e)
	}
	if _, ok := h.reg.Function("slow"); !ok {
		t.Fatalf("a deploy that timed out waiting must stay committed")
	}
	if r := h.doJSON("POST", "/v1/functions/slow", spec+`,"wait":false}`); r.status != 201 {
		t.Fatalf("wait:false: %d %s", r.status, r.body)
	}
	if r := h.doJSON("POST", "/v1/functions/slow/rollback", `{"version":1,"wait":false}`); r.status != 200 {
		t.Fatalf("rollback wait:false: %d %s", r.status, r.body)
	}
	if r := h.doJSON("POST", "/v1/functions/slow/rollback", `{"version":2}`); r.status != 504 {
		t.Fatalf("rollback waiting: %d %s", r.status, r.body)
	}
	r = h.doJSON("POST", "/v1/functions/broken", spec+`,"wait":true,"wait_timeout":"5s"}`)
	if e := r.apiErr(t); r.status != 500 || e.Code != CodeNotReady || !strings.Contains(e.Message, "out of memory") {
		t.Fatalf("broken: %d %+v", r.status, e)
	}
}

// TestAPIEnvRedaction deploys a secret and reads every endpoint: the value
// must never come back, in a body or in the log.
func TestAPIEnvRedaction(t *testing.T) {
	const secret = "s3cr3t-value-do-not-leak"
	h := newAPIHarness(t, nil)
	sha := h.upload(testModule(10, 1))
	deploy := fmt.Sprintf(`{"sha256":%q,"size":10,"env":{"API_KEY":%q,"PLAIN":"x"}}`, sha, secret)
	var bodies []string
	check := func(r response) {
		t.Helper()
		bodies = append(bodies, r.body)
		if r.status >= 300 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	check(h.doJSON("POST", "/v1/functions/a", deploy))
	check(h.doJSON("POST", "/v1/functions/a", deploy))
	check(h.do("GET", "/v1/functions", nil))
	check(h.do("GET", "/v1/functions/a", nil))
	check(h.do("GET", "/v1/functions/a/versions", nil))
	check(h.doJSON("POST", "/v1/functions/a/rollback", `{}`))
	check(h.do("GET", "/v1/status", nil))
	// Errors after a secret was sent must not echo it either.
	bodies = append(bodies, h.doJSON("POST", "/v1/functions/a", deploy[:len(deploy)-1]+`,"bogus":1}`).body)
	bodies = append(bodies, h.doJSON("POST", "/v1/functions/a", deploy+"x").body)
	bodies = append(bodies, h.doJSON("POST", "/v1/functions/a", fmt.Sprintf(`{"sha256":%q,"size":10,"env":{"PIN":987654321}}`, sha)).body)
	for _, b := range bodies {
		if strings.Contains(b, secret) || strings.Contains(b, "987654321") {
			t.Fatalf("a response carries the secret: %s", b)
		}
	}
	if !strings.Contains(bodies[0], `"API_KEY":""`) || !strings.Contains(bodies[3], `"API_KEY":""`) {
		t.Fatalf("env keys are missing: %s / %s", bodies[0], bodies[3])
	}
	if logs := h.logs.String(); strings.Contains(logs, secret) || !strings.Contains(logs, "function deployed") {
		t.Fatalf("logs: %s", logs)
	}
	// The registry still has the real value: only the API redacts.
	f, _ := h.reg.Function("a")
	if f.Versions[0].Env["API_KEY"] != secret {
		t.Fatalf("redaction changed the registry's data: %v", f.Versions[0].Env)
	}
}

// The disk blob store is the BlobStore the node uses.
var _ BlobStore = (*storage.Blobs)(nil)

// TestAPIWithDiskBlobs runs uploads through the real blob store: its
// errors map to the same answers as the in-memory one's.
func TestAPIWithDiskBlobs(t *testing.T) {
	disk, err := storage.OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, func(c *APIConfig) { c.Blobs = disk; c.MaxModuleBytes = 1000 })
	mod := testModule(1000, 1)
	sha := sha256hex(mod)
	if r := h.do("PUT", "/v1/blobs/"+sha, bytes.NewReader(mod)); r.status != 201 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/blobs/"+sha, bytes.NewReader(mod)); r.status != 201 {
		t.Fatalf("upload again: %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/blobs/"+sha256hex([]byte("x")), bytes.NewReader(mod)); r.status != 422 || r.apiErr(t).Code != CodeHashMismatch {
		t.Fatalf("mismatch: %d %s", r.status, r.body)
	}
	big := testModule(1001, 2)
	if r := h.do("PUT", "/v1/blobs/"+sha256hex(big), io.MultiReader(bytes.NewReader(big))); r.status != 413 || r.apiErr(t).Code != CodeModuleTooLarge {
		t.Fatalf("too large: %d %s", r.status, r.body)
	}
	if r := h.do("HEAD", "/v1/blobs/"+sha, nil); r.status != 200 {
		t.Fatalf("HEAD: %d", r.status)
	}
	v, err := h.client.Deploy(t.Context(), "disk", bytes.NewReader(mod), storage.Spec{}, DeployOptions{})
	if err != nil || v.SHA256 != sha {
		t.Fatalf("deploy: %+v %v", v, err)
	}
}

// repeatedKey tells keys repeated within one object from the same key in
// sibling or nested objects, at any depth.
func TestRepeatedKey(t *testing.T) {
	for doc, want := range map[string]string{
		`{}`: "",
		`{"routes":[{"path":"/a","methods":["GET"]},{"path":"/b","methods":["GET","GET"]}],"path":1}`: "",
		`{"a":{"a":{"a":[{"a":1}]}},"b":[[],{}],"c":"a"}`:                                             "",
		`{"a":[1,{"x":1,"y":{"x":2}}],"b":2,"a":3}`:                                                   `"a"`,
		`{"a":[1,{"x":1,"y":{"x":2},"x":3}]}`:                                                         `"x"`,
		`{"s":"k","k":1,"k":2}`:                                                                       `"k"`,
	} {
		err := repeatedKey([]byte(doc))
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("repeatedKey(%s) = %v, want %q", doc, err, want)
		}
	}
}
