package edge

import "testing"

// The plain-HTTP redirect's target keeps the request's host, IPv6
// literals in brackets once, and puts the HTTPS port unless it is 443.
func TestHTTPSHost(t *testing.T) {
	for _, c := range []struct {
		host, port, want string // want "" means a 400
	}{
		{"example.com", "8443", "example.com:8443"},
		{"example.com:80", "8443", "example.com:8443"},
		{"Example.COM.:8080", "8443", "Example.COM.:8443"},
		{"127.0.0.1:8080", "8443", "127.0.0.1:8443"},
		{"[::1]", "8443", "[::1]:8443"},
		{"[::1]:8080", "8443", "[::1]:8443"},
		{"[fe80::1%25eth0]:80", "8443", "[fe80::1%25eth0]:8443"},
		{"::1", "8443", "[::1]:8443"},
		{"example.com", "443", "example.com"},
		{"example.com:80", "443", "example.com"},
		{"[::1]", "443", "[::1]"},
		{"[::1]:8080", "443", "[::1]"},
		{"::1", "443", "[::1]"},
		{"", "8443", ""},
		{":8080", "8443", ""},
		{"[]", "443", ""},
		{"[::1", "8443", ""},
		{"[[::1]]", "8443", ""},
	} {
		got, ok := httpsHost(c.host, c.port)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("httpsHost(%q, %q) = %q, %v; want %q", c.host, c.port, got, ok, c.want)
		}
	}
}
