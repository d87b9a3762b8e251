package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/storage"
)

// Through the admin API as gojinn-node wires it (the node's real
// pre-check): a spec that breaks the rules of mode, reset, routes or
// limits is 400 `invalid` naming the field, and nothing is compiled or
// proposed; what depends on the module (compile, initialisation, its
// memory against the limit) or on another function (a route conflict)
// stays 422 `check_failed`. Before, the edge's and the runtime's spec
// rules surfaced from the pre-check as 422 check_failed.
func TestAPIDeploySpecRules(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, nil)
	tiny := wat(t)
	tinySHA := a.upload(tiny)
	big := runtimetest.WAT(t, "runtime/testdata/wat/bigmem.wat")
	bigSHA := a.upload(big)
	initLoop := runtimetest.WAT(t, "runtime/testdata/wat/init-loop.wat")
	initLoopSHA := a.upload(initLoop)
	garbage := testModule(64, 7)
	garbageSHA := a.upload(garbage)
	if r := a.doJSON("POST", "/v1/functions/other", deployBody(tinySHA, len(tiny), `[{"path":"/taken"}]`, "")); r.status != http.StatusCreated {
		t.Fatalf("deploy other: %d %s", r.status, r.body)
	}
	body := func(sha string, size int, fields string) string {
		return fmt.Sprintf(`{"sha256":%q,"size":%d,%s}`, sha, size, fields)
	}
	pooled := func(fields string) string { return body(tinySHA, len(tiny), `"mode":"pooled",`+fields) }

	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   string
		msg    []string
	}{
		{"memory one byte", pooled(`"limits":{"memory_bytes":1}`), 400, CodeInvalid,
			[]string{"spec.limits.memory_bytes 1 ", "64 KiB"}},
		{"memory below a page", pooled(`"limits":{"memory_bytes":65535}`), 400, CodeInvalid,
			[]string{"spec.limits.memory_bytes 65535"}},
		{"memory over 4 GiB", pooled(`"limits":{"memory_bytes":4294967297}`), 400, CodeInvalid,
			[]string{"spec.limits.memory_bytes 4294967297", "4 GiB"}},
		{"reset with mode isolated", body(tinySHA, len(tiny), `"mode":"isolated","reset":"cow"`), 400, CodeInvalid,
			[]string{`spec.reset "cow" needs mode "pooled"`, `the mode is "isolated"`}},
		{"reset without a mode", body(tinySHA, len(tiny), `"reset":"auto"`), 400, CodeInvalid,
			[]string{`spec.reset "auto" needs mode "pooled"`}},
		{"lower-case method", pooled(`"routes":[{"path":"/x","methods":["get"]}]`), 400, CodeInvalid,
			[]string{"spec.routes[0]", `write "GET"`}},
		{"CONNECT route", pooled(`"routes":[{"path":"/x","methods":["GET","CONNECT"]}]`), 400, CodeInvalid,
			[]string{"spec.routes[0]", "method CONNECT never reaches a function"}},
		{"method twice", pooled(`"routes":[{"path":"/x"},{"path":"/y","methods":["GET","GET"]}]`), 400, CodeInvalid,
			[]string{"spec.routes[1]", "listed twice"}},
		{"route twice", pooled(`"routes":[{"path":"/a"},{"path":"/b"},{"path":"/a"}]`), 400, CodeInvalid,
			[]string{`spec.routes[2] "/a" matches requests spec.routes[0] "/a" already matches`}},
		{"route within a broader one", pooled(`"routes":[{"host":"API.example.com.","path":"/a/*"},{"host":"api.example.com","path":"/a/*","methods":["GET"]}]`), 400, CodeInvalid,
			[]string{`spec.routes[1] "GET api.example.com/a/*"`}},
		{"overlapping methods", pooled(`"routes":[{"path":"/a","methods":["GET","POST"]},{"host":"*","path":"/a","methods":["PUT","POST"]}]`), 400, CodeInvalid,
			[]string{`spec.routes[1] "PUT,POST */a"`}},
		{"wait_timeout under a second", pooled(`"wait_timeout":"500ms"`), 400, CodeInvalid,
			[]string{"wait_timeout 500ms", "from 1s to 10m0s"}},
		{"bad host", pooled(`"routes":[{"host":"[::1","path":"/x"}]`), 400, CodeInvalid,
			[]string{"spec.routes[0]", "closing ']'"}},
		{"percent-encoded route path", pooled(`"routes":[{"path":"/%41/*"}]`), 400, CodeInvalid,
			[]string{"spec.routes[0]", "decoded path", `"/A/*"`}},
		{"route of another function", pooled(`"routes":[{"path":"/taken"}]`), 422, CodeCheckFailed,
			[]string{`"other"`}},
		{"module does not compile", body(garbageSHA, len(garbage), `"mode":"pooled"`), 422, CodeCheckFailed,
			[]string{"rejected, nothing was deployed"}},
		{"module needs more memory than the limit", body(bigSHA, len(big), `"limits":{"memory_bytes":65536}`), 422, CodeCheckFailed,
			[]string{"initial memory", "raise the limit"}},
		{"module fails to initialise", body(initLoopSHA, len(initLoop), `"mode":"pooled","limits":{"timeout":"100ms"}`), 422, CodeCheckFailed,
			[]string{"failed to initialise"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.doJSON("POST", "/v1/functions/fn", tc.body)
			e := r.apiErr(t)
			if r.status != tc.status || e.Code != tc.code {
				t.Fatalf("%d %+v; want %d %s", r.status, e, tc.status, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q lacks %q", e.Message, m)
				}
			}
			if tc.status == http.StatusBadRequest && !errors.Is(&e, storage.ErrInvalid) {
				t.Errorf("%+v does not match storage.ErrInvalid", e)
			}
		})
	}
	if _, ok := n.store.Function("fn"); ok {
		t.Fatal("a refused deploy was committed")
	}
	// A spec within the rules deploys.
	ok := pooled(`"reset":"cow","routes":[{"path":"/fn","methods":["GET","POST"]}],"limits":{"memory_bytes":1048576}`)
	if r := a.doJSON("POST", "/v1/functions/fn", ok); r.status != http.StatusCreated {
		t.Fatalf("deploy of a valid spec: %d %s", r.status, r.body)
	}
}

// The deploy API's spec rules (validateDeploySpec) refuse exactly the
// specs the runtime refuses as ErrInvalidSpec for a module that fits in
// any allowed memory limit: they are a copy of the runtime's rules, and
// this test fails when the two drift apart.
func TestDeploySpecRulesMatchRuntime(t *testing.T) {
	e := enginetest.Engine(t)
	mod := wat(t) // one page of initial memory: fits the smallest limit
	sha := sha256hex(mod)
	type spec struct {
		mode, reset string
		mem         uint64
	}
	var specs []spec
	for _, mode := range []string{"", storage.ModeIsolated, storage.ModePooled} {
		for _, reset := range []string{"", storage.ResetNone, storage.ResetAuto, storage.ResetCopy, storage.ResetCoW} {
			specs = append(specs, spec{mode, reset, 0})
		}
	}
	for _, mem := range []uint64{1, minMemoryBytes - 1, minMemoryBytes, 128 << 20, maxMemoryBytes, maxMemoryBytes + 1, 1 << 40} {
		specs = append(specs, spec{storage.ModePooled, "", mem})
	}
	for _, s := range specs {
		st := storage.Spec{SHA256: sha, Size: int64(len(mod)), Mode: s.mode, Reset: s.reset, Limits: storage.Limits{MemoryBytes: s.mem}}
		ours := validateDeploySpec("fn", st)
		theirs := e.Check(context.Background(), RuntimeSpec("fn", storage.Version{Spec: st}, mod))
		if (ours != nil) != errors.Is(theirs, runtime.ErrInvalidSpec) {
			t.Errorf("mode %q reset %q memory_bytes %d: the API says %v, the runtime %v", s.mode, s.reset, s.mem, ours, theirs)
		}
		if ours != nil && !errors.Is(ours, storage.ErrInvalid) {
			t.Errorf("mode %q reset %q memory_bytes %d: %v does not wrap storage.ErrInvalid", s.mode, s.reset, s.mem, ours)
		}
	}
}
