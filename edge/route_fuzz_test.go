package edge_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/edge"
)

// FuzzParseRoute checks that ParseRoute never panics, fails only with
// ErrInvalidRoute, and that every route it accepts round-trips through
// String, builds a table and can be looked up.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/hello", "example.com/api/*", "*.example.com/", "GET,POST example.com/x",
		"*/static/*", "/*", "/", "[::1]/x", "HEAD [2001:db8::1]/a/", "Example.COM./x",
		"GET,HEAD *.a.b.example.com/api/v1/*", "X-CUSTOM /a%20b/ü",
		"", " ", "example.com", "get /x", "GET,,POST /x", "GET a b", "example.com:80/x",
		"/api*", "/a//b", "/a/../b", "*./x", "a.*.com/x", "[::1/x", "::1/x", "/a?b", "/\xff",
		"GET\t/x", "GET\u00a0/x", "/a\u0085b",
		"*." + strings.Repeat("abcdefghi.", 24) + "abcdefg.com/x", // longest wildcard that can match
		strings.Repeat("abcdefghi.", 25) + "abc./x",               // longest host, trailing dot
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		r, err := edge.ParseRoute(spec)
		if err != nil {
			if !errors.Is(err, edge.ErrInvalidRoute) {
				t.Fatalf("ParseRoute(%q) error %v does not wrap ErrInvalidRoute", spec, err)
			}
			return
		}
		s := r.String()
		back, err := edge.ParseRoute(s)
		if err != nil {
			t.Fatalf("ParseRoute(%q) = %#v; its String %q does not parse: %v", spec, r, s, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("ParseRoute(%q) = %#v; String %q parses to %#v", spec, r, s, back)
		}
		if back.String() != s {
			t.Fatalf("String not stable: %q then %q", s, back.String())
		}
		r.Function = "f"
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed route %q does not validate: %v", s, err)
		}
		tab, err := edge.NewRouteTable([]edge.Route{r})
		if err != nil {
			t.Fatalf("NewRouteTable(%q): %v", s, err)
		}
		// The route must match a request built from its own pattern.
		host := r.Host
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			host = "a." + rest
		} else if host == "*" {
			host = "any.test"
		}
		path, prefix := strings.CutSuffix(r.Path, "/*")
		if prefix {
			path += "/x"
		}
		method := "GET"
		if len(r.Methods) > 0 {
			method = r.Methods[len(r.Methods)-1]
		}
		m, st := tab.Lookup(host+":8080", path, method)
		if st != edge.RouteFound || !reflect.DeepEqual(m.Route, r) {
			t.Fatalf("route %q: Lookup(%q, %q, %q) = %#v, %v", s, host, path, method, m, st)
		}
		if len(r.Methods) > 0 {
			allowed := r.Methods
			if slices.Contains(allowed, "GET") && !slices.Contains(allowed, "HEAD") {
				allowed = append(slices.Clone(allowed), "HEAD") // GET implies HEAD
			}
			if m, st := tab.Lookup(host, path, "NOT-"+method); st != edge.MethodNotAllowed || !reflect.DeepEqual(m.Allowed, allowed) {
				t.Fatalf("route %q: other method gave %#v, %v", s, m, st)
			}
		}
	})
}
