package edge

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors of the router. Errors from ParseRoute, Route.Validate and
// NewRouteTable wrap one of these.
var (
	// ErrInvalidRoute means a route pattern, method list or function name is
	// malformed. The message says what to write instead.
	ErrInvalidRoute = errors.New("invalid route")
	// ErrRouteConflict means two routes with the same host and path patterns
	// and a common method name different functions.
	ErrRouteConflict = errors.New("conflicting routes")
)

// routeMaxHostLen is the longest host name a route can name (DNS allows 253
// characters without the trailing dot). Longer request hosts only match
// any-host routes.
const routeMaxHostLen = 253

// Route maps requests to a function.
//
// Host is "" or "*" for any host, "example.com" for exactly that host, or
// "*.example.com" for every subdomain of example.com at any depth (a.example.com,
// a.b.example.com) but not example.com itself. IPv6 literals are written in
// brackets ("[::1]") and compared in canonical form ([0:0::1] is [::1]).
// Hosts match case-insensitively, ignoring a trailing dot and the request's
// port.
//
// Path is "/exact/path" for exactly that path, or "/prefix/*" for /prefix,
// /prefix/ and everything below it; "/*" and "" match every path. A '*' is
// allowed only as the whole last segment.
//
// Methods lists the upper-case methods the route serves ("GET", "POST");
// empty means every method. A route that lists GET also serves HEAD
// (RFC 9110 section 9.3.2: HEAD is GET without the content), unless a
// route for the same host and path lists HEAD itself.
//
// Precedence, when several routes match a request's host, path and method:
//  1. Host: an exact host beats a wildcard; a wildcard with more labels
//     (*.a.example.com) beats one with fewer (*.example.com); any wildcard
//     beats the any-host route.
//  2. Path, among the routes of the winning host pattern: an exact path
//     beats a prefix; a longer prefix beats a shorter one.
//  3. Method, for the same host and path pattern: a route listing the
//     request's method beats one that serves every method.
//
// Only routes that match the method compete: when the most specific host
// pattern has no route for the path and method, less specific host patterns
// are tried (an exact host with only /api/* falls through to the any-host
// route for /other). When routes match the host and path but none the
// method, the lookup reports MethodNotAllowed with the methods that would
// have matched.
type Route struct {
	// Host is the host pattern; "" and "*" match any host.
	Host string
	// Path is the path pattern; "" means "/*".
	Path string
	// Methods are the methods served; empty means every method.
	Methods []string
	// Function is the name of the function that serves the route.
	Function string
}

// ParseRoute parses the command-line form of a route's pattern:
//
//	route   = [methods SP] [host] path
//	methods = method *("," method)   ; upper-case HTTP tokens, e.g. GET,HEAD
//	host    = "*" / "*." domain / domain / "[" ipv6 "]"
//	path    = "/" ... ; starts at the first '/', may end in "/*"
//
// Examples: "/hello", "example.com/api/*", "*.example.com/",
// "GET,POST example.com/x", "*/static/*". The host and path take no space;
// the host carries no port. The returned Route has an empty Function for
// the caller to set; Route.String gives back an equivalent spec.
func ParseRoute(spec string) (Route, error) {
	fields := strings.Fields(spec)
	var r Route
	var pattern string
	switch len(fields) {
	case 1:
		pattern = fields[0]
	case 2:
		if strings.ContainsAny(fields[0], "/.*[") {
			// Not a method list: a pattern with a space in it.
			return Route{}, fmt.Errorf("%w %q: a route's host and path take no space (write the path as a handler sees it, without spaces), and methods come first: [METHODS ]HOST/PATH, e.g. \"GET,HEAD example.com/api/*\"", ErrInvalidRoute, spec)
		}
		r.Methods = strings.Split(fields[0], ",")
		pattern = fields[1]
	default:
		return Route{}, fmt.Errorf("%w %q: write [METHODS ]HOST/PATH, e.g. \"GET,HEAD example.com/api/*\" or \"/hello\"", ErrInvalidRoute, spec)
	}
	slash := strings.IndexByte(pattern, '/')
	if slash < 0 {
		return Route{}, fmt.Errorf("%w %q: no path; write %q for every path or %q for the root only", ErrInvalidRoute, spec, pattern+"/*", pattern+"/")
	}
	r.Host, r.Path = pattern[:slash], pattern[slash:]
	if err := r.validatePattern(); err != nil {
		return Route{}, err
	}
	return r, nil
}

// String returns the route's pattern in the form ParseRoute reads, without
// the function: "GET,HEAD example.com/api/*".
func (r Route) String() string {
	var b strings.Builder
	if len(r.Methods) > 0 {
		b.WriteString(strings.Join(r.Methods, ","))
		b.WriteByte(' ')
	}
	b.WriteString(r.Host)
	if r.Path == "" {
		b.WriteString("/*")
	} else {
		b.WriteString(r.Path)
	}
	return b.String()
}

// Validate reports the first problem with the route's patterns, methods or
// function name.
func (r Route) Validate() error {
	if err := r.validatePattern(); err != nil {
		return err
	}
	if r.Function == "" {
		return fmt.Errorf("%w %q: no function; name the function that serves it", ErrInvalidRoute, r.String())
	}
	if strings.IndexFunc(r.Function, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0 {
		return fmt.Errorf("%w %q: function name %q contains a space or control character", ErrInvalidRoute, r.String(), r.Function)
	}
	return nil
}

func (r Route) validatePattern() error {
	if err := validateRouteMethods(r.Methods); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidRoute, r.String(), err)
	}
	if err := validateRouteHost(r.Host); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidRoute, r.String(), err)
	}
	if err := validateRoutePath(r.Path); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidRoute, r.String(), err)
	}
	return nil
}

// validateRouteMethods checks that every method is an upper-case RFC 9110 token
// listed once. Problems are returned as plain errors for the caller to wrap.
func validateRouteMethods(methods []string) error {
	for i, m := range methods {
		if m == "" {
			return errors.New("empty method; separate methods with single commas: GET,HEAD")
		}
		for j := 0; j < len(m); j++ {
			c := m[j]
			if c >= 'a' && c <= 'z' {
				return fmt.Errorf("method %q is not upper-case; write %q", m, strings.ToUpper(m))
			}
			if !isRouteTokenChar(c) {
				return fmt.Errorf("method %q is not an HTTP method token; write e.g. GET or POST", m)
			}
		}
		if slices.Contains(methods[:i], m) {
			return fmt.Errorf("method %s is listed twice", m)
		}
	}
	return nil
}

func isRouteTokenChar(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validateRouteHost(host string) error {
	if host == "" || host == "*" {
		return nil
	}
	if strings.HasPrefix(host, "[") {
		inner, ok := strings.CutSuffix(host[1:], "]")
		if !ok {
			return fmt.Errorf("host %q has no closing ']'; routes match every port, so write [::1] without one", host)
		}
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("host %q is not an IPv6 address; write e.g. [::1]", host)
		}
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return fmt.Errorf("host %q: write IPv6 addresses in brackets: [%s]", host, host)
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return fmt.Errorf("host %q has a port; routes match every port, so write %q", host, host[:i])
	}
	name, limit := strings.TrimSuffix(host, "."), routeMaxHostLen
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		// Leave room for the shortest subdomain ("a.") it must match.
		name, limit = rest, routeMaxHostLen-2
		if name == "" {
			return fmt.Errorf("host %q: a wildcard needs a domain; write *.example.com, or * for any host", host)
		}
	}
	if len(name) > limit {
		return fmt.Errorf("host %q is longer than %d characters", host, limit)
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := validateRouteLabel(host, label); err != nil {
			return err
		}
	}
	return nil
}

func validateRouteLabel(host, label string) error {
	switch {
	case label == "":
		return fmt.Errorf("host %q has an empty label; write e.g. example.com", host)
	case label == "*" || strings.Contains(label, "*"):
		return fmt.Errorf("host %q: '*' may only be the whole first label; write *.example.com", host)
	case len(label) > 63:
		return fmt.Errorf("host %q has a label longer than 63 characters", host)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			continue
		}
		if c >= utf8.RuneSelf {
			return fmt.Errorf("host %q is not ASCII; write the punycode form (xn--...)", host)
		}
		return fmt.Errorf("host %q: character %q is not allowed; use letters, digits, '-' and '.'", host, c)
	}
	return nil
}

func validateRoutePath(path string) error {
	if path == "" {
		return nil
	}
	if path[0] != '/' {
		return fmt.Errorf("path %q does not start with '/'; write %q", path, "/"+path)
	}
	if !utf8.ValidString(path) {
		return fmt.Errorf("path %q is not valid UTF-8", path)
	}
	if i := strings.IndexFunc(path, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }); i >= 0 {
		return fmt.Errorf("path %q contains a space or control character; write it as the decoded path without spaces", path)
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return fmt.Errorf("path %q contains %q; routes match the path only, so write %q", path, path[i], path[:i])
	}
	body, _ := strings.CutSuffix(path, "/*")
	if strings.Contains(body, "*") {
		if strings.HasSuffix(path, "*") {
			return fmt.Errorf("path %q: '*' must be a whole last segment; write %q for a prefix", path, strings.TrimRight(path, "*/")+"/*")
		}
		return fmt.Errorf("path %q: '*' may only end the path as \"/*\"; write e.g. /api/*", path)
	}
	if strings.Contains(path, "//") {
		return fmt.Errorf("path %q has an empty segment; write %q", path, routeCleanSlashes(path))
	}
	for seg := range strings.SplitSeq(body, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("path %q contains a %q segment; write the cleaned path", path, seg)
		}
	}
	return nil
}

func routeCleanSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// LookupStatus says how a lookup ended.
type LookupStatus int

const (
	// RouteNotFound means no route matches the host and path.
	RouteNotFound LookupStatus = iota
	// RouteFound means a route matches host, path and method.
	RouteFound
	// MethodNotAllowed means routes match the host and path but none the
	// method; Match.Allowed lists the methods that would match.
	MethodNotAllowed
	// RouteCatchingUp means no route matches, but the table may be
	// missing routes: the node is still catching up with the cluster's log
	// (RouteTable.CatchingUp), so the answer is 503, not 404.
	RouteCatchingUp
)

// String returns the status's name.
func (s LookupStatus) String() string {
	switch s {
	case RouteNotFound:
		return "RouteNotFound"
	case RouteFound:
		return "RouteFound"
	case MethodNotAllowed:
		return "MethodNotAllowed"
	case RouteCatchingUp:
		return "RouteCatchingUp"
	}
	return fmt.Sprintf("LookupStatus(%d)", int(s))
}

// Match is the result of a lookup.
type Match struct {
	// Function serves the request (RouteFound only).
	Function string
	// Route is the route that won (RouteFound only).
	Route Route
	// Allowed lists the methods the matching routes serve, for an Allow
	// header (MethodNotAllowed only).
	Allowed []string
}

// RouteTable is an immutable set of routes, safe for concurrent lookups.
// Build a new table with NewRouteTable to change routes.
type RouteTable struct {
	routes    []Route
	functions []string
	exact     map[string]*hostRoutes // by lower-case host without trailing dot
	wildcard  map[string]*hostRoutes // "*.example.com" under "example.com"
	wildLens  lenSet                 // lengths of the wildcard keys
	any       *hostRoutes
	// catchingUp turns RouteNotFound into RouteCatchingUp (CatchingUp).
	catchingUp bool
}

// CatchingUp returns a copy of t whose lookups report RouteCatchingUp
// where t reports RouteNotFound: for a node that has not caught up with
// the cluster's log yet, whose table may lack routes the cluster has, so
// that a function it does not know of yet gets 503 rather than a 404
// that caches keep.
func (t *RouteTable) CatchingUp() *RouteTable {
	if t == nil {
		t = &RouteTable{}
	}
	c := *t
	c.catchingUp = true
	return &c
}

// hostRoutes holds the routes of one host pattern.
type hostRoutes struct {
	exact  map[string]*pathRoutes // by path
	prefix map[string]*pathRoutes // "/api/*" under "/api", "/*" under ""
	lens   lenSet                 // lengths of the prefix keys
}

// lenSet is a set of key lengths, so lookups skip map probes for lengths no
// key has. Lengths from 256 up are always reported present.
type lenSet [4]uint64

func (s *lenSet) add(n int) {
	if n < 256 {
		s[n>>6] |= 1 << (n & 63)
	}
}

func (s *lenSet) has(n int) bool {
	return n >= 256 || s[n>>6]&(1<<(n&63)) != 0
}

// pathRoutes holds the routes of one host and path pattern.
type pathRoutes struct {
	methods []methodRoute // routes that list methods, one entry per method
	any     *Route        // the route serving every method, or nil
}

type methodRoute struct {
	method string
	route  *Route
	// implied marks the HEAD a GET route serves without listing it: a
	// route listing HEAD replaces it, and it conflicts with nothing.
	implied bool
}

// NewRouteTable validates every route and builds a table. Routes with the
// same host and path patterns conflict when they name different functions
// and either both list a common method or both serve every method; a route
// listing methods may override one serving every method. Identical routes
// for the same function are merged.
func NewRouteTable(routes []Route) (*RouteTable, error) {
	t := &RouteTable{
		routes:   make([]Route, len(routes)),
		exact:    map[string]*hostRoutes{},
		wildcard: map[string]*hostRoutes{},
	}
	for i, r := range routes {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		r.Methods = slices.Clone(r.Methods)
		t.routes[i] = r
	}
	for i := range t.routes {
		r := &t.routes[i]
		if err := t.host(r.Host).path(r.Path).add(r); err != nil {
			return nil, err
		}
		if !slices.Contains(t.functions, r.Function) {
			t.functions = append(t.functions, r.Function)
		}
	}
	slices.Sort(t.functions)
	return t, nil
}

// host returns the routes of a (valid) host pattern, creating them.
func (t *RouteTable) host(pattern string) *hostRoutes {
	m, key := t.exact, routeHostKey(pattern)
	switch {
	case pattern == "" || pattern == "*":
		if t.any == nil {
			t.any = &hostRoutes{}
		}
		return t.any
	case strings.HasPrefix(key, "*."):
		m, key = t.wildcard, key[2:]
		t.wildLens.add(len(key))
	}
	h := m[key]
	if h == nil {
		h = &hostRoutes{}
		m[key] = h
	}
	return h
}

// routeHostKey normalizes a valid host pattern as the lookup normalizes request
// hosts: lower case, no trailing dot, IPv6 without brackets.
func routeHostKey(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.HasPrefix(host, "[") {
		// Canonical form (RFC 5952), as clients send it: [0:0::1] is [::1].
		return netip.MustParseAddr(host[1 : len(host)-1]).String()
	}
	return host
}

// path returns the routes of a (valid) path pattern, creating them.
func (h *hostRoutes) path(pattern string) *pathRoutes {
	if pattern == "" {
		pattern = "/*"
	}
	mp := &h.exact
	key, prefix := strings.CutSuffix(pattern, "/*")
	if prefix {
		mp = &h.prefix
		h.lens.add(len(key))
	}
	if *mp == nil {
		*mp = map[string]*pathRoutes{}
	}
	p := (*mp)[key]
	if p == nil {
		p = &pathRoutes{}
		(*mp)[key] = p
	}
	return p
}

func (p *pathRoutes) add(r *Route) error {
	conflict := func(old *Route) error {
		return fmt.Errorf("%w: route %q for function %q and route %q for function %q match the same requests; remove one or give them different methods",
			ErrRouteConflict, old.String(), old.Function, r.String(), r.Function)
	}
	if len(r.Methods) == 0 {
		if p.any != nil && p.any.Function != r.Function {
			return conflict(p.any)
		}
		if p.any == nil {
			p.any = r
		}
		return nil
	}
	for _, m := range r.Methods {
		if i := slices.IndexFunc(p.methods, func(mr methodRoute) bool { return mr.method == m }); i >= 0 {
			if p.methods[i].implied {
				p.methods[i] = methodRoute{method: m, route: r}
				continue
			}
			if old := p.methods[i].route; old.Function != r.Function {
				return conflict(old)
			}
			continue
		}
		p.methods = append(p.methods, methodRoute{method: m, route: r})
	}
	if slices.Contains(r.Methods, http.MethodGet) && !slices.ContainsFunc(p.methods, func(mr methodRoute) bool { return mr.method == http.MethodHead }) {
		p.methods = append(p.methods, methodRoute{method: http.MethodHead, route: r, implied: true})
	}
	return nil
}

// Functions returns the distinct functions the table names, sorted.
func (t *RouteTable) Functions() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.functions)
}

// Len returns the number of routes the table was built from.
func (t *RouteTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Routes returns a copy of the routes the table was built from, in order.
func (t *RouteTable) Routes() []Route {
	if t == nil {
		return nil
	}
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		r.Methods = slices.Clone(r.Methods)
		out[i] = r
	}
	return out
}

// Lookup finds the route for a request's host (as in the Host header or
// :authority, port allowed), path (decoded, as in URL.Path) and method. It
// does not allocate when a route is found. A nil table has no routes.
func (t *RouteTable) Lookup(host, path, method string) (Match, LookupStatus) {
	if t == nil {
		return Match{}, RouteNotFound
	}
	// The request host is lowered into a stack buffer; map lookups keyed
	// by string(buf[...]) do not allocate.
	var buf [routeMaxHostLen]byte
	n := lowerRequestHost(&buf, host)
	h := buf[:n]
	pathSeen := false
	if n > 0 {
		if hr := t.exact[string(h)]; hr != nil {
			r, seen := hr.lookup(path, method)
			if r != nil {
				return Match{Function: r.Function, Route: *r}, RouteFound
			}
			pathSeen = pathSeen || seen
		}
		// Suffixes after each dot, longest (most labels) first.
		for i := 0; i < n; i++ {
			if h[i] != '.' || !t.wildLens.has(n-i-1) {
				continue
			}
			if hr := t.wildcard[string(h[i+1:])]; hr != nil {
				r, seen := hr.lookup(path, method)
				if r != nil {
					return Match{Function: r.Function, Route: *r}, RouteFound
				}
				pathSeen = pathSeen || seen
			}
		}
	}
	if t.any != nil {
		r, seen := t.any.lookup(path, method)
		if r != nil {
			return Match{Function: r.Function, Route: *r}, RouteFound
		}
		pathSeen = pathSeen || seen
	}
	if !pathSeen {
		if t.catchingUp {
			return Match{}, RouteCatchingUp
		}
		return Match{}, RouteNotFound
	}
	return Match{Allowed: t.allowed(string(h), path)}, MethodNotAllowed
}

// lowerRequestHost writes host into buf lower-cased, without port, brackets
// and trailing dot, and returns its length. It returns 0 for an empty host
// and for hosts too long for any route, which then only match any-host
// routes.
func lowerRequestHost(buf *[routeMaxHostLen]byte, host string) int {
	ipv6 := false
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return 0
		}
		host, ipv6 = host[1:end], true
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		if strings.IndexByte(host[i+1:], ':') < 0 {
			host = host[:i] // host:port
		} else {
			ipv6 = true // a bare IPv6 literal has several colons
		}
	}
	if ipv6 {
		// Routes hold IPv6 addresses in canonical form (RFC 5952).
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() && a.Zone() == "" {
			return len(a.AppendTo(buf[:0]))
		}
		return 0
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > len(buf) {
		return 0
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return len(host)
}

// lookup finds the route for path and method among one host pattern's
// routes. seen reports whether some route matched the path.
func (h *hostRoutes) lookup(path, method string) (r *Route, seen bool) {
	if p := h.exact[path]; p != nil {
		if r := p.match(method); r != nil {
			return r, true
		}
		seen = true
	}
	if len(h.prefix) == 0 {
		return nil, seen
	}
	// Prefix "/a/b/*" is stored under "/a/b" and matches "/a/b" and
	// "/a/b/...": try the path itself, then every part before a '/',
	// longest first.
	for i := len(path); i >= 0; i-- {
		if i < len(path) && path[i] != '/' || !h.lens.has(i) {
			continue
		}
		if p := h.prefix[path[:i]]; p != nil {
			if r := p.match(method); r != nil {
				return r, true
			}
			seen = true
		}
	}
	return nil, seen
}

func (p *pathRoutes) match(method string) *Route {
	for i := range p.methods {
		if p.methods[i].method == method {
			return p.methods[i].route
		}
	}
	return p.any
}

// allowed collects, in precedence order, the methods of every route that
// matches host (normalized) and path. It runs only for MethodNotAllowed.
func (t *RouteTable) allowed(host, path string) []string {
	var hosts []*hostRoutes
	if host != "" {
		hosts = append(hosts, t.exact[host])
		for i := 0; i < len(host); i++ {
			if host[i] == '.' {
				hosts = append(hosts, t.wildcard[host[i+1:]])
			}
		}
	}
	hosts = append(hosts, t.any)
	var out []string
	add := func(p *pathRoutes) {
		if p == nil {
			return
		}
		for _, m := range p.methods {
			if !slices.Contains(out, m.method) {
				out = append(out, m.method)
			}
		}
	}
	for _, h := range hosts {
		if h == nil {
			continue
		}
		add(h.exact[path])
		add(h.prefix[path])
		for i := len(path) - 1; i >= 0; i-- {
			if path[i] == '/' {
				add(h.prefix[path[:i]])
			}
		}
	}
	return out
}

// emptyRouteTable is what a zero Router serves. It is never modified.
var emptyRouteTable = &RouteTable{}

// Router holds the current route table. Lookups load it without a lock;
// Swap replaces it atomically when routes change. The zero value serves an
// empty table.
type Router struct {
	table atomic.Pointer[RouteTable]
}

// Load returns the current table, never nil.
func (r *Router) Load() *RouteTable {
	if t := r.table.Load(); t != nil {
		return t
	}
	return emptyRouteTable
}

// Swap installs t (nil means an empty table) and returns the previous
// table, never nil.
func (r *Router) Swap(t *RouteTable) *RouteTable {
	if old := r.table.Swap(t); old != nil {
		return old
	}
	return emptyRouteTable
}

// Lookup looks the request up in the current table.
func (r *Router) Lookup(host, path, method string) (Match, LookupStatus) {
	return r.Load().Lookup(host, path, method)
}
