package rawwat

import (
	"context"
	"fmt"
	"testing"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// The raw WAT guest receives the request JSON on stdin and reports its
// length: the test checks it against the JSON the host really sends.
func TestRawWAT(t *testing.T) {
	e := enginetest.Engine(t)
	f, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "raw-wat", Version: "test",
		Module: runtimetest.WAT(t, "examples/raw-wat/main.wat")})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"", "hello", string(make([]byte, 100_000))} {
		req := enginetest.Request("POST", "/raw?x=1", nil, []byte(body))
		resp := enginetest.Invoke(t, f, req)
		req.Function, req.FunctionVersion = "raw-wat", "test"
		sent, err := protocol.MarshalRequestJSON(req)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("raw WAT guest read %d bytes of request JSON\n", len(sent))
		if resp.StatusOrDefault() != 200 || string(resp.Body) != want || resp.Headers.Get("Content-Type") != "text/plain" {
			t.Errorf("body of %d bytes: %d %q %v, want %q", len(body), resp.Status, resp.Body, resp.Headers, want)
		}
	}
}
