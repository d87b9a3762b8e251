package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/runtime/enginetest"
)

func TestEcho(t *testing.T) {
	e := enginetest.Engine(t)
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0x80}
	for _, m := range enginetest.GoModes {
		t.Run(m.Name, func(t *testing.T) {
			f := enginetest.LoadGo(t, e, "examples/echo", m)

			h := http.Header{"X-Multi": {"a", "b"}, "Accept": {"text/plain"}}
			resp := enginetest.Invoke(t, f, enginetest.Request("GET", "/path/x?b=2&a=1&a=3&set=X-Reply:yes&set=X-Reply:again&status=201", h, nil))
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

			raw := enginetest.Invoke(t, f, enginetest.Request("POST", "/raw", nil, binary))
			if !bytes.Equal(raw.Body, binary) || raw.Headers.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("binary body came back as %v (%s)", raw.Body, raw.Headers.Get("Content-Type"))
			}

			bad := enginetest.Invoke(t, f, enginetest.Request("GET", "/?status=abc", nil, nil))
			if bad.Status != 400 || !strings.Contains(string(bad.Body), "status must be a number") {
				t.Errorf("bad status parameter: %d %q", bad.Status, bad.Body)
			}
		})
	}
}

// The same guest gives the same answers whatever the execution mode.
func TestModesAgree(t *testing.T) {
	e := enginetest.Engine(t)
	reqs := []struct {
		method, target string
		body           []byte
	}{
		{"GET", "/a/b?x=1&x=2&set=X-Y:z", nil},
		{"POST", "/raw?status=201", []byte{0, 1, 2, 250}},
		{"PUT", "/text", []byte("héllo\nwörld")},
		{"GET", "/?status=nope", nil},
	}
	var first []string
	for _, m := range enginetest.GoModes {
		f := enginetest.LoadGo(t, e, "examples/echo", m)
		var got []string
		for _, r := range reqs {
			resp := enginetest.Invoke(t, f, enginetest.Request(r.method, r.target, http.Header{"X-Test": {"1"}}, r.body))
			got = append(got, fmt.Sprintf("%d %v %q", resp.StatusOrDefault(), resp.Headers, resp.Body))
		}
		// The function name differs by mode; the rest must not.
		for i := range got {
			got[i] = strings.ReplaceAll(got[i], "function "+m.Name+"@", "function X@")
		}
		if first == nil {
			first = got
			continue
		}
		for i := range got {
			if got[i] != first[i] {
				t.Errorf("%s answers request %d differently:\n got %s\nwant %s", m.Name, i, got[i], first[i])
			}
		}
	}
}
