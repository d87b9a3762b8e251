package edge_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gojinn/gojinn/edge"
)

// mustRoutes parses "SPEC=FUNCTION" pairs into routes.
func mustRoutes(t testing.TB, specs ...string) []edge.Route {
	t.Helper()
	out := make([]edge.Route, 0, len(specs))
	for _, s := range specs {
		i := strings.LastIndexByte(s, '=')
		r, err := edge.ParseRoute(s[:i])
		if err != nil {
			t.Fatalf("ParseRoute(%q): %v", s[:i], err)
		}
		r.Function = s[i+1:]
		out = append(out, r)
	}
	return out
}

func mustTable(t testing.TB, specs ...string) *edge.RouteTable {
	t.Helper()
	tab, err := edge.NewRouteTable(mustRoutes(t, specs...))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestRoutePrecedence is the executable statement of the precedence rules
// in the Route doc comment.
func TestRoutePrecedence(t *testing.T) {
	tab := mustTable(t,
		"/*=any-catchall",
		"/hello=any-hello",
		"*/static/*=any-static",
		"example.com/api/*=exact-api",
		"example.com/api/v1/*=exact-api-v1",
		"example.com/api/v1/users=exact-users",
		"GET,HEAD example.com/api/v1/users=exact-users-get",
		"POST example.com/form=exact-form-post",
		"*.example.com/=wild-root",
		"*.example.com/api/*=wild-api",
		"*.eu.example.com/api/*=wild-eu-api",
		"[::1]/v6=ipv6",
		"only.test/thing=only-thing",
		"GET only.test/get=only-get",
		"PUT */put=any-put",
		"DELETE */put=any-delete",
		"GET other.test/put=other-get",
	)
	cases := []struct {
		name, host, path, method string
		want                     string // function, or "405:ALLOW,..." or "404"
	}{
		// Host: exact > wildcard > any; more labels win among wildcards.
		{"exact host prefix", "example.com", "/api/x", "GET", "exact-api"},
		{"wildcard host", "a.example.com", "/api/x", "GET", "wild-api"},
		{"wildcard any depth", "a.b.example.com", "/api/x", "GET", "wild-api"},
		{"wildcard with more labels wins", "x.eu.example.com", "/api/x", "GET", "wild-eu-api"},
		{"deeper under longer wildcard", "y.x.eu.example.com", "/api/x", "GET", "wild-eu-api"},
		{"wildcard excludes its apex", "eu.example.com", "/api/x", "GET", "wild-api"},
		{"apex is not a wildcard match", "example.com", "/", "GET", "any-catchall"},
		{"unknown host", "nowhere.test", "/api/x", "GET", "any-catchall"},
		{"empty host", "", "/hello", "GET", "any-hello"},
		// Host normalization.
		{"case-insensitive host", "EXAMPLE.Com", "/api/x", "GET", "exact-api"},
		{"port stripped", "example.com:8443", "/api/x", "GET", "exact-api"},
		{"trailing dot", "example.com.", "/api/x", "GET", "exact-api"},
		{"trailing dot and port", "A.Example.com.:80", "/api/x", "GET", "wild-api"},
		{"ipv6 with port", "[::1]:8080", "/v6", "GET", "ipv6"},
		{"ipv6 without port", "[::1]", "/v6", "GET", "ipv6"},
		{"bare ipv6", "::1", "/v6", "GET", "ipv6"},
		{"non-canonical ipv6", "[0:0:0::1]:80", "/v6", "GET", "ipv6"},
		{"ipv6 with zone", "[::1%eth0]", "/v6", "GET", "any-catchall"},
		{"broken ipv6", "[::1", "/v6", "GET", "any-catchall"},
		// Path within the winning host: exact > longest prefix.
		{"exact path beats prefix", "example.com", "/api/v1/users", "PATCH", "exact-users"},
		{"longest prefix", "example.com", "/api/v1/users/7", "GET", "exact-api-v1"},
		{"prefix matches its bare path", "example.com", "/api/v1", "GET", "exact-api-v1"},
		{"prefix matches its slash path", "example.com", "/api/v1/", "GET", "exact-api-v1"},
		{"prefix is per segment", "example.com", "/api/v10", "GET", "exact-api"},
		{"prefix not a string prefix", "example.com", "/apix", "GET", "any-catchall"},
		{"wildcard root exact", "a.example.com", "/", "GET", "wild-root"},
		{"exact root only", "a.example.com", "/x", "GET", "any-catchall"},
		// Method: a route listing the method beats one serving every method.
		{"listed method wins", "example.com", "/api/v1/users", "GET", "exact-users-get"},
		{"listed HEAD", "example.com", "/api/v1/users", "HEAD", "exact-users-get"},
		{"methods are case-sensitive", "example.com", "/api/v1/users", "get", "exact-users"},
		// Fall back to less specific hosts when the winner has no route.
		{"exact host falls through", "example.com", "/other", "GET", "any-catchall"},
		{"exact host falls through to any path", "example.com", "/static/app.js", "GET", "any-static"},
		{"wildcard falls through", "a.example.com", "/hello", "GET", "any-hello"},
		{"method mismatch falls through", "example.com", "/form", "GET", "any-catchall"},
		{"method match", "example.com", "/form", "POST", "exact-form-post"},
		{"listed method on another host", "other.test", "/put", "GET", "other-get"},
		{"any-host listed method", "other.test", "/put", "PUT", "any-put"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, st := tab.Lookup(c.host, c.path, c.method)
			if got := describe(m, st); got != c.want {
				t.Errorf("Lookup(%q, %q, %q) = %s, want %s", c.host, c.path, c.method, got, c.want)
			}
		})
	}

	// Without a catch-all, a path served for other methods is a 405 that
	// lists the methods of every route matching host and path.
	tab = mustTable(t,
		"GET only.test/get=only-get",
		"GET,HEAD */x/*=any-x",
		"POST only.test/x/y=only-post",
		"DELETE only.test/x/*=only-delete",
		"only.test/thing=only-thing",
	)
	for _, c := range []struct{ host, path, method, want string }{
		{"only.test", "/get", "POST", "405:GET,HEAD"},
		{"only.test", "/get", "HEAD", "only-get"},
		{"only.test", "/x/y", "PUT", "405:POST,DELETE,GET,HEAD"},
		{"only.test", "/x/z", "PUT", "405:DELETE,GET,HEAD"},
		{"elsewhere", "/x/y", "PUT", "405:GET,HEAD"},
		{"only.test", "/x/y", "HEAD", "any-x"},
		{"only.test", "/thing", "BREW", "only-thing"},
		{"only.test", "/nothing", "GET", "404"},
		{"elsewhere", "/get", "GET", "404"},
	} {
		m, st := tab.Lookup(c.host, c.path, c.method)
		if got := describe(m, st); got != c.want {
			t.Errorf("Lookup(%q, %q, %q) = %s, want %s", c.host, c.path, c.method, got, c.want)
		}
	}

	// GET implies HEAD: a HEAD goes where GET goes, not to a less specific
	// route or one serving every method, unless a route lists HEAD itself.
	tab = mustTable(t,
		"/*=catchall",
		"GET /g/*=getonly",
		"/both=both-any",
		"GET /both=both-get",
		"HEAD /own=own-head",
		"GET /own=own-get",
		"GET /own2=own2-get",
		"HEAD /own2=own2-head",
	)
	for _, c := range []struct{ path, method, want string }{
		{"/g/x", "HEAD", "getonly"},
		{"/g/x", "OPTIONS", "catchall"},
		{"/both", "HEAD", "both-get"},
		{"/both", "POST", "both-any"},
		{"/own", "HEAD", "own-head"},
		{"/own2", "HEAD", "own2-head"},
		{"/own2", "GET", "own2-get"},
	} {
		m, st := tab.Lookup("h.test", c.path, c.method)
		if got := describe(m, st); got != c.want {
			t.Errorf("Lookup(%q, %q) = %s, want %s", c.path, c.method, got, c.want)
		}
	}
}

func describe(m edge.Match, st edge.LookupStatus) string {
	switch st {
	case edge.RouteFound:
		return m.Function
	case edge.MethodNotAllowed:
		return "405:" + strings.Join(m.Allowed, ",")
	case edge.RouteNotFound:
		return "404"
	}
	return st.String()
}

func TestRouteMatchCarriesPattern(t *testing.T) {
	tab := mustTable(t, "GET,HEAD Example.com/api/*=f")
	m, st := tab.Lookup("example.com", "/api/x", "HEAD")
	if st != edge.RouteFound {
		t.Fatalf("status %v", st)
	}
	want := edge.Route{Host: "Example.com", Path: "/api/*", Methods: []string{"GET", "HEAD"}, Function: "f"}
	if !reflect.DeepEqual(m.Route, want) {
		t.Errorf("Match.Route = %#v, want %#v", m.Route, want)
	}
}

func TestRouteValidation(t *testing.T) {
	cases := []struct {
		route edge.Route
		want  string // substring of the error; "" means valid
	}{
		{edge.Route{Function: "f"}, ""},
		{edge.Route{Host: "*", Path: "/*", Function: "f"}, ""},
		{edge.Route{Host: "Example.COM.", Path: "/", Function: "f"}, ""},
		{edge.Route{Host: "*.example.com", Path: "/a/b/", Function: "f"}, ""},
		{edge.Route{Host: "127.0.0.1", Path: "/x", Function: "f"}, ""},
		{edge.Route{Host: "[2001:db8::1]", Path: "/x", Function: "f"}, ""},
		{edge.Route{Host: "_acme.example.com", Path: "/x", Function: "f"}, ""},
		{edge.Route{Path: "/a%20b/ü/*", Methods: []string{"GET", "X-CUSTOM"}, Function: "f"}, ""},

		{edge.Route{Path: "/x"}, "no function"},
		{edge.Route{Path: "/x", Function: "a b"}, "contains a space"},
		{edge.Route{Path: "x", Function: "f"}, `write "/x"`},
		{edge.Route{Path: "/api*", Function: "f"}, `write "/api/*" for a prefix`},
		{edge.Route{Path: "/a/*/b", Function: "f"}, `only end the path as "/*"`},
		{edge.Route{Path: "/a//b", Function: "f"}, `empty segment; write "/a/b"`},
		{edge.Route{Path: "//*", Function: "f"}, "empty segment"},
		{edge.Route{Path: "/a/../b", Function: "f"}, `".." segment`},
		{edge.Route{Path: "/a/./*", Function: "f"}, `"." segment`},
		{edge.Route{Path: "/a?b=1", Function: "f"}, `write "/a"`},
		{edge.Route{Path: "/a#frag", Function: "f"}, `write "/a"`},
		{edge.Route{Path: "/a b", Function: "f"}, "space"},
		{edge.Route{Path: "/a\x00", Function: "f"}, "control character"},
		{edge.Route{Path: "/\xff", Function: "f"}, "UTF-8"},
		{edge.Route{Host: "example.com:8080", Path: "/", Function: "f"}, `routes match every port, so write "example.com"`},
		{edge.Route{Host: "::1", Path: "/", Function: "f"}, "in brackets: [::1]"},
		{edge.Route{Host: "[::1", Path: "/", Function: "f"}, "no closing ']'"},
		{edge.Route{Host: "[1.2.3.4]", Path: "/", Function: "f"}, "not an IPv6 address"},
		{edge.Route{Host: "a.*.com", Path: "/", Function: "f"}, "write *.example.com"},
		{edge.Route{Host: "*example.com", Path: "/", Function: "f"}, "write *.example.com"},
		{edge.Route{Host: "*.", Path: "/", Function: "f"}, "'*' may only be"},
		{edge.Route{Host: "a..b", Path: "/", Function: "f"}, "empty label"},
		{edge.Route{Host: "bücher.de", Path: "/", Function: "f"}, "punycode"},
		{edge.Route{Host: "a!b", Path: "/", Function: "f"}, "not allowed"},
		{edge.Route{Host: strings.Repeat("a", 64) + ".com", Path: "/", Function: "f"}, "longer than 63"},
		{edge.Route{Host: strings.Repeat("abcdefghi.", 26) + "com", Path: "/", Function: "f"}, "longer than 253"},
		{edge.Route{Host: strings.Repeat("abcdefghi.", 25) + "com", Path: "/", Function: "f"}, ""},
		{edge.Route{Host: "*." + strings.Repeat("abcdefghi.", 25) + "com", Path: "/", Function: "f"}, "longer than 251"},
		{edge.Route{Host: "*." + strings.Repeat("abcdefghi.", 24) + "abcdefg.com", Path: "/", Function: "f"}, ""},
		{edge.Route{Path: "/", Methods: []string{"get"}, Function: "f"}, `not upper-case; write "GET"`},
		{edge.Route{Path: "/", Methods: []string{"GET", ""}, Function: "f"}, "empty method"},
		{edge.Route{Path: "/", Methods: []string{"GE T"}, Function: "f"}, "not an HTTP method token"},
		{edge.Route{Path: "/", Methods: []string{"GET", "GET"}, Function: "f"}, "listed twice"},
	}
	for _, c := range cases {
		err := c.route.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%#v: unexpected error %v", c.route, err)
		case c.want != "" && err == nil:
			t.Errorf("%#v: no error, want one containing %q", c.route, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%#v: error %q does not contain %q", c.route, err, c.want)
		case err != nil && !errors.Is(err, edge.ErrInvalidRoute):
			t.Errorf("%#v: error %v does not wrap ErrInvalidRoute", c.route, err)
		}
		if c.want != "" {
			if _, err := edge.NewRouteTable([]edge.Route{c.route}); !errors.Is(err, edge.ErrInvalidRoute) {
				t.Errorf("NewRouteTable(%#v) = %v, want ErrInvalidRoute", c.route, err)
			}
		}
	}
}

func TestParseRoute(t *testing.T) {
	cases := []struct {
		spec string
		want edge.Route
		err  string
	}{
		{spec: "/hello", want: edge.Route{Path: "/hello"}},
		{spec: "example.com/api/*", want: edge.Route{Host: "example.com", Path: "/api/*"}},
		{spec: "*.example.com/", want: edge.Route{Host: "*.example.com", Path: "/"}},
		{spec: "GET,POST example.com/x", want: edge.Route{Host: "example.com", Path: "/x", Methods: []string{"GET", "POST"}}},
		{spec: "*/static/*", want: edge.Route{Host: "*", Path: "/static/*"}},
		{spec: "  HEAD \t[::1]/x  ", want: edge.Route{Host: "[::1]", Path: "/x", Methods: []string{"HEAD"}}},
		{spec: "", err: "write [METHODS ]HOST/PATH"},
		{spec: "GET example.com /x", err: "write [METHODS ]HOST/PATH"},
		{spec: "example.com", err: `no path; write "example.com/*" for every path or "example.com/" for the root only`},
		{spec: "get /x", err: `write "GET"`},
		{spec: "/with space", err: "take no space"},
		{spec: "example.com/a b", err: "take no space"},
		{spec: "GET,,POST /x", err: "empty method"},
		{spec: "example.com:80/x", err: "has a port"},
	}
	for _, c := range cases {
		got, err := edge.ParseRoute(c.spec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, edge.ErrInvalidRoute) {
				t.Errorf("ParseRoute(%q) = %v, want ErrInvalidRoute containing %q", c.spec, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", c.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseRoute(%q) = %#v, want %#v", c.spec, got, c.want)
		}
		back, err := edge.ParseRoute(got.String())
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("ParseRoute(%q).String() = %q reparses to %#v, %v", c.spec, got.String(), back, err)
		}
	}
}

func TestRouteString(t *testing.T) {
	for _, c := range []struct {
		r    edge.Route
		want string
	}{
		{edge.Route{}, "/*"},
		{edge.Route{Host: "*"}, "*/*"},
		{edge.Route{Host: "a.com", Path: "/x", Methods: []string{"GET", "HEAD"}, Function: "f"}, "GET,HEAD a.com/x"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestRouteTableConflicts(t *testing.T) {
	for _, c := range []struct {
		specs []string
		want  string // "" means no conflict
	}{
		{[]string{"/x=a", "/x=b"}, `route "/x" for function "a" and route "/x" for function "b"`},
		{[]string{"*/x=a", "/x=b"}, "conflicting routes"},
		{[]string{"/*=a", "*/=b"}, ""},
		{[]string{"/*=a", "/=b", "*/*=c"}, `route "/*" for function "a" and route "*/*" for function "c"`},
		{[]string{"GET,POST a.com/x=a", "PUT,POST A.com./x=b"}, `route "GET,POST a.com/x" for function "a" and route "PUT,POST A.com./x" for function "b"`},
		{[]string{"GET a.com/x=a", "PUT a.com/x=b"}, ""},
		{[]string{"GET a.com/x=a", "a.com/x=b"}, ""},                  // listed method overrides every-method
		{[]string{"/x=a", "/x=a", "GET /x=a"}, ""},                    // same function merges
		{[]string{"a.com/x=a", "*.a.com/x=b"}, ""},                    // different host patterns
		{[]string{"/x/*=a", "/x=b"}, ""},                              // prefix and exact differ
		{[]string{"[::1]/x=a", "[0:0::1]/x=b"}, "conflicting routes"}, // same address
		{[]string{"[::1]/x=a", "[::1]./x=b"}, "bad"},                  // invalid host
		{[]string{"*.a.com/x=a", "*.A.COM/x=b"}, "conflicting routes"},
	} {
		routes := make([]edge.Route, 0, len(c.specs))
		bad := false
		for _, s := range c.specs {
			i := strings.LastIndexByte(s, '=')
			r, err := edge.ParseRoute(s[:i])
			if err != nil {
				bad = true
				break
			}
			r.Function = s[i+1:]
			routes = append(routes, r)
		}
		if bad {
			if c.want != "bad" {
				t.Errorf("%v: unexpected parse failure", c.specs)
			}
			continue
		}
		_, err := edge.NewRouteTable(routes)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: unexpected error %v", c.specs, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, edge.ErrRouteConflict)):
			t.Errorf("%v: error %v, want ErrRouteConflict containing %q", c.specs, err, c.want)
		}
	}
}

func TestRouteTableAccessors(t *testing.T) {
	routes := mustRoutes(t, "/a=b-fn", "/b=a-fn", "GET /c=b-fn")
	tab, err := edge.NewRouteTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	routes[2].Methods[0] = "POST" // the table keeps its own copy
	if m, st := tab.Lookup("h", "/c", "GET"); st != edge.RouteFound || m.Function != "b-fn" {
		t.Errorf("table changed with its input: %v %v", m, st)
	}
	if got, want := tab.Functions(), []string{"a-fn", "b-fn"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Functions() = %v, want %v", got, want)
	}
	if tab.Len() != 3 {
		t.Errorf("Len() = %d, want 3", tab.Len())
	}
	var nilTab *edge.RouteTable
	if _, st := nilTab.Lookup("h", "/", "GET"); st != edge.RouteNotFound || nilTab.Len() != 0 || nilTab.Functions() != nil {
		t.Error("nil table is not empty")
	}
	empty, err := edge.NewRouteTable(nil)
	if err != nil || empty.Len() != 0 {
		t.Fatalf("empty table: %v", err)
	}
	if _, st := empty.Lookup("h", "/", "GET"); st != edge.RouteNotFound {
		t.Errorf("empty table found a route")
	}
}

func TestRouterZeroValueAndSwap(t *testing.T) {
	var r edge.Router
	if r.Load() == nil || r.Load().Len() != 0 {
		t.Fatal("zero Router does not serve an empty table")
	}
	if _, st := r.Lookup("h", "/", "GET"); st != edge.RouteNotFound {
		t.Fatal("zero Router found a route")
	}
	tab := mustTable(t, "/=root")
	if old := r.Swap(tab); old == nil || old.Len() != 0 {
		t.Fatal("first Swap did not return the empty table")
	}
	if m, st := r.Lookup("h", "/", "GET"); st != edge.RouteFound || m.Function != "root" {
		t.Fatalf("after Swap: %v %v", m, st)
	}
	if old := r.Swap(nil); old != tab {
		t.Fatal("Swap did not return the previous table")
	}
	if r.Load().Len() != 0 {
		t.Fatal("Swap(nil) does not serve an empty table")
	}
}

// TestRouterConcurrentSwapLookup swaps tables while readers look up; run it
// with -race. Every reader must see a whole table: the function it finds
// always belongs to the generation the route's path names.
func TestRouterConcurrentSwapLookup(t *testing.T) {
	const generations = 200
	tables := make([]*edge.RouteTable, generations)
	for g := range tables {
		tables[g] = mustTable(t,
			fmt.Sprintf("/gen/*=g%d", g),
			fmt.Sprintf("GET example.com/x=e%d", g),
		)
	}
	var r edge.Router
	r.Swap(tables[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				tab := r.Load()
				a, st1 := tab.Lookup("example.com", "/gen/1", "GET")
				b, st2 := tab.Lookup("example.com", "/x", "GET")
				if st1 != edge.RouteFound || st2 != edge.RouteFound || a.Function[1:] != b.Function[1:] {
					errs <- fmt.Errorf("torn table: %v %v %v %v", a.Function, st1, b.Function, st2)
					return
				}
			}
		})
	}
	for g := 1; g < generations; g++ {
		r.Swap(tables[g])
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m, _ := r.Lookup("a", "/gen/", "GET"); m.Function != fmt.Sprintf("g%d", generations-1) {
		t.Errorf("last table not served: %v", m.Function)
	}
}

func TestRouteLookupAllocs(t *testing.T) {
	tab := benchTable(t, 1000)
	for _, c := range []struct{ host, path, method string }{
		{"h100.example.com", "/api/v1/items/42", "GET"},
		{"H100.Example.COM:8443", "/exact/100", "POST"},
		{"x.w200.example.com", "/deep/a/b/c", "GET"},
		{"unknown.test", "/static/app.js", "GET"},
		{"[::1]:443", "/static/x", "GET"},
		{"[0:0::1]", "/static/x", "GET"},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, st := tab.Lookup(c.host, c.path, c.method); st != edge.RouteFound {
				t.Fatalf("no route for %v", c)
			}
		})
		if allocs != 0 {
			t.Errorf("Lookup(%q, %q, %q) allocates %.0f times", c.host, c.path, c.method, allocs)
		}
	}
}

// benchTable builds n routes across n/4 exact hosts, n/4 wildcard hosts and
// the any-host pattern, with exact paths, prefixes and method lists.
func benchTable(t testing.TB, n int) *edge.RouteTable {
	t.Helper()
	routes := make([]edge.Route, 0, n)
	for i := 0; len(routes) < n; i++ {
		h := fmt.Sprintf("h%d.example.com", i)
		w := fmt.Sprintf("*.w%d.example.com", i)
		routes = append(routes,
			edge.Route{Host: h, Path: "/api/v1/*", Function: fmt.Sprintf("api%d", i)},
			edge.Route{Host: h, Path: fmt.Sprintf("/exact/%d", i), Methods: []string{"GET", "POST"}, Function: fmt.Sprintf("ex%d", i)},
			edge.Route{Host: w, Path: "/deep/*", Function: fmt.Sprintf("deep%d", i)},
			edge.Route{Path: fmt.Sprintf("/any/%d/*", i), Function: fmt.Sprintf("any%d", i)},
		)
	}
	routes = append(routes[:n-1], edge.Route{Path: "/static/*", Function: "static"})
	tab, err := edge.NewRouteTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// BenchmarkRouteLookup looks up a mix of requests in a 1000-route table.
// Run with -benchmem: the found path must report 0 allocs/op.
func BenchmarkRouteLookup(b *testing.B) {
	tab := benchTable(b, 1000)
	reqs := []struct{ host, path, method string }{
		{"h100.example.com", "/api/v1/items/42", "GET"},
		{"h17.example.com:8443", "/exact/17", "POST"},
		{"x.w200.example.com", "/deep/a/b/c", "GET"},
		{"unknown.test", "/static/app.js", "GET"},
	}
	var r edge.Router
	r.Swap(tab)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q := reqs[i%len(reqs)]
		if _, st := r.Lookup(q.host, q.path, q.method); st != edge.RouteFound {
			b.Fatalf("no route for %v", q)
		}
	}
}
