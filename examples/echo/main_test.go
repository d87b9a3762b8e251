package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/examples/internal/extest"
)

func TestEcho(t *testing.T) {
	e := extest.Engine(t)
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}
	for _, m := range extest.GoModes {
		t.Run(m.Name, func(t *testing.T) {
			f := extest.LoadGo(t, e, "examples/echo", m)

			h := http.Header{"X-Multi": {"a", "b"}, "Accept": {"text/plain"}}
			resp := extest.Invoke(t, f, extest.Request("GET", "/path/x?b=2&a=1&a=3&set=X-Reply:yes&set=X-Reply:again&status=201", h, nil))
			body := string(resp.Body)
			for _, want := range []string{"GET /path/x HTTP/2.0\n", "query a=1,3\n", "query b=2\n", "header X-Multi: a,b\n",
				"header Accept: text/plain\n", "body 0 bytes", "function " + m.Name + "@test", "request rid-1"} {
				if !strings.Contains(body, want) {
					t.Errorf("echo body lacks %q:\n%s", want, body)
				}
			}
			if resp.Status != 201 {
				t.Errorf("status %d, want 201", resp.Status)
			}
			if got := resp.Headers.Values("X-Reply"); len(got) != 2 || got[0] != "yes" || got[1] != "again" {
				t.Errorf("multi-valued response header: %q", got)
			}

			raw := extest.Invoke(t, f, extest.Request("POST", "/raw", nil, binary))
			if !bytes.Equal(raw.Body, binary) || raw.Headers.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("binary body came back as %v (%s)", raw.Body, raw.Headers.Get("Content-Type"))
			}

			bad := extest.Invoke(t, f, extest.Request("GET", "/?status=abc", nil, nil))
			if bad.Status != 400 || !strings.Contains(string(bad.Body), "status must be a number") {
				t.Errorf("bad status parameter: %d %q", bad.Status, bad.Body)
			}
		})
	}
}
