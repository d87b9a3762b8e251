package main

import (
	"testing"

	"github.com/gojinn/gojinn/runtime/enginetest"
)

func TestHelloRaw(t *testing.T) {
	e := enginetest.Engine(t)
	for _, m := range enginetest.GoModes {
		t.Run(m.Name, func(t *testing.T) {
			f := enginetest.LoadGo(t, e, "examples/hello-raw", m)
			for target, want := range map[string]string{
				"/":              "Hello, world!\n",
				"/?name=Gojinn":  "Hello, Gojinn!\n",
				"/x?name=%C3%A9": "Hello, é!\n",
			} {
				resp := enginetest.Invoke(t, f, enginetest.Request("GET", target, nil, nil))
				if resp.StatusOrDefault() != 200 || string(resp.Body) != want {
					t.Errorf("%s: %d %q, want %q", target, resp.Status, resp.Body, want)
				}
				if ct := resp.Headers.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("%s: Content-Type %q", target, ct)
				}
			}
		})
	}
}
