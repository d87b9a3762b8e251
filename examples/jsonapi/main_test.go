package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/runtime/enginetest"
)

func TestJSONAPI(t *testing.T) {
	e := enginetest.Engine(t)
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	for _, m := range enginetest.GoModes {
		t.Run(m.Name, func(t *testing.T) {
			f := enginetest.LoadGo(t, e, "examples/jsonapi", m)

			resp := enginetest.Invoke(t, f, enginetest.Request("POST", "/todos", jsonHdr, []byte(`{"title":"write tests"}`)))
			var todo Todo
			if err := json.Unmarshal(resp.Body, &todo); err != nil || resp.Status != 201 {
				t.Fatalf("create: %d %s (%v)", resp.Status, resp.Body, err)
			}
			if todo.Title != "write tests" || len(todo.ID) != 16 || resp.Headers.Get("Location") != "/todos/"+todo.ID {
				t.Fatalf("created todo %+v, Location %q", todo, resp.Headers.Get("Location"))
			}

			got := enginetest.Invoke(t, f, enginetest.Request("GET", "/todos/"+todo.ID, nil, nil))
			if got.StatusOrDefault() != 200 || !strings.Contains(string(got.Body), todo.ID) {
				t.Fatalf("get: %d %s", got.Status, got.Body)
			}
			for _, c := range []struct {
				method, target, body string
				status               int
				msg                  string
			}{
				{"POST", "/todos", `{"title":`, 400, "must be a JSON todo"},
				{"POST", "/todos", `{"title":"x","owner":"me"}`, 400, "unknown field"},
				{"POST", "/todos", `{"title":"  "}`, 422, "must not be empty"},
				{"GET", "/todos/short", "", 404, "not found"},
				{"DELETE", "/nothing", "", 404, "no route"},
			} {
				r := enginetest.Invoke(t, f, enginetest.Request(c.method, c.target, jsonHdr, []byte(c.body)))
				var e struct{ Error string }
				if r.Status != c.status || json.Unmarshal(r.Body, &e) != nil || !strings.Contains(e.Error, c.msg) {
					t.Errorf("%s %s %s: %d %s, want %d with %q", c.method, c.target, c.body, r.Status, r.Body, c.status, c.msg)
				}
			}
		})
	}
}
