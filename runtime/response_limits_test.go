package runtime_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// A guest answering with more header fields than the protocol allows gets
// ErrBadResponse (502 at the edge), in the wire form of pooled and isolated
// reactors and in the JSON form of commands; at the limit it is served.
func TestResponseHeaderLimits(t *testing.T) {
	e := newEngine(t)
	for _, mode := range []runtime.Mode{runtime.ModePooled, runtime.ModeIsolated} {
		t.Run(string(mode), func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "flood-" + string(mode), Module: wat(t, "header-flood"), Mode: mode})
			res, err := invoke(t, f, get("/at"))
			if err != nil {
				t.Fatalf("%d fields: %v", protocol.MaxResponseHeaderFields, err)
			}
			if n := len(res.Response.HeaderMap()["A"]); n != protocol.MaxResponseHeaderFields {
				t.Fatalf("got %d values of A, want %d", n, protocol.MaxResponseHeaderFields)
			}
			for i := 0; i < 2; i++ { // and again on the instance that refused
				_, err = invoke(t, f, get("/over"))
				checkTooManyHeaders(t, err)
			}
			if _, err := invoke(t, f, get("/at")); err != nil {
				t.Fatalf("after the refusals: %v", err)
			}
		})
	}
	t.Run("command", func(t *testing.T) {
		f := load(t, e, runtime.FunctionSpec{Name: "flood-cmd", Module: wat(t, "cmd-header-flood"), Mode: runtime.ModeIsolated})
		_, err := invoke(t, f, get("/"))
		checkTooManyHeaders(t, err)
	})
}

func checkTooManyHeaders(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, runtime.ErrBadResponse) || !errors.Is(err, protocol.ErrTooLarge) {
		t.Fatalf("got %v, want ErrBadResponse wrapping protocol.ErrTooLarge", err)
	}
	if st := runtime.HTTPStatus(err); st != http.StatusBadGateway {
		t.Fatalf("HTTPStatus = %d, want 502", st)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(protocol.MaxResponseHeaderFields)) {
		t.Fatalf("error %q does not state the limit", err)
	}
}

// A pooled instance that once had a memory.grow refused, handled the -1 and
// answered, reports a later, unrelated failure as what it is, not as
// ErrMemoryLimit; a call that is refused and then fails still is one. With
// reset too: restoring the snapshot does not bring the refusal back.
func TestRefusedGrowLabelsOnlyItsCall(t *testing.T) {
	e := newEngine(t)
	for _, reset := range []runtime.Reset{runtime.ResetNone, runtime.ResetCopy, runtime.ResetCoW} {
		t.Run(string(reset), func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: "grow-" + string(reset), Module: wat(t, "grow-refused-then-trap"),
				Mode: runtime.ModePooled, Reset: reset,
				Limits: runtime.Limits{MemoryBytes: 1 << 20, MaxInstances: 1, Timeout: 10 * time.Second}})
			for round := 0; round < 2; round++ { // the second on a new instance
				for i := 0; i < 2; i++ {
					if st, body := mustInvoke(t, f, get("/grow")); st != 200 || body != "ok" {
						t.Fatalf("/grow: %d %q", st, body)
					}
				}
				_, err := invoke(t, f, get("/trap"))
				if !errors.Is(err, runtime.ErrTrap) || errors.Is(err, runtime.ErrMemoryLimit) {
					t.Fatalf("/trap after a handled refusal: got %v, want ErrTrap", err)
				}
				_, err = invoke(t, f, get("/xgrowtrap"))
				if !errors.Is(err, runtime.ErrMemoryLimit) {
					t.Fatalf("/xgrowtrap: got %v, want ErrMemoryLimit", err)
				}
			}
		})
	}
}

// The header budget comes on top of the body's: a response with both at
// their limits is read whole and served.
func TestResponseHeaderBudgetBesideBody(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "budget", Module: wat(t, "header-budget"), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxResponseBody: 100}})
	res, err := invoke(t, f, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fl := range res.Response.Fields {
		n += len(fl.Name) + len(fl.Value)
	}
	if n != protocol.MaxResponseHeaderBytes || len(res.Response.Body) != 100 {
		t.Fatalf("got %d bytes of headers and a %d-byte body, want %d and 100", n, len(res.Response.Body), protocol.MaxResponseHeaderBytes)
	}
}
