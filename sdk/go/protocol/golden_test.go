package protocol

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the files in testdata/golden")

// goldenRequest is a representative request: every field set, a
// multi-valued header, a query and a JSON body.
func goldenRequest() *Request {
	return &Request{
		Method:   "POST",
		URI:      "/api/orders?expand=items&expand=customer&dry_run=1",
		Path:     "/api/orders",
		RawQuery: "expand=items&expand=customer&dry_run=1",
		Headers: http.Header{
			"Accept":          {"application/json", "text/plain;q=0.5"},
			"Content-Length":  {"41"},
			"Content-Type":    {"application/json; charset=utf-8"},
			"User-Agent":      {"curl/8.5.0"},
			"X-Forwarded-For": {"198.51.100.4"},
		},
		Body:            []byte(`{"sku":"GJ-1","qty":2,"note":"café ☕"}`),
		Host:            "shop.example.com",
		Scheme:          "https",
		Proto:           "HTTP/2.0",
		RemoteAddr:      "198.51.100.4:40211",
		RequestID:       "01JDQ3V6N9TB4C8XR2M5KZ7H0E",
		TraceParent:     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		Function:        "orders",
		FunctionVersion: "2025-11-26.1",
	}
}

// goldenResponse is a representative response: a multi-valued header and
// a binary body, which the JSON form carries as base64.
func goldenResponse() *Response {
	return &Response{
		Status: 201,
		Headers: http.Header{
			"Cache-Control": {"no-store"},
			"Content-Type":  {"image/png"},
			"Location":      {"/api/orders/1042"},
			"Set-Cookie":    {"session=abc; Path=/; HttpOnly", "theme=dark; Path=/"},
		},
		Body: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
	}
}

// TestGolden pins the encoders' output, so that the formats cannot drift
// without a visible change to testdata/golden. Run with -update to rewrite
// the files after a deliberate change.
func TestGolden(t *testing.T) {
	reqJSON, err := MarshalRequestJSON(goldenRequest())
	if err != nil {
		t.Fatal(err)
	}
	respJSON, err := MarshalResponseJSON(goldenResponse())
	if err != nil {
		t.Fatal(err)
	}
	respWire, err := AppendResponseWire(nil, goldenResponse())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		file   string
		got    []byte
		decode func([]byte) error
	}{
		{"request.json", reqJSON, func(b []byte) error {
			r, err := UnmarshalRequestJSON(b)
			if err == nil && !equalRequest(r, goldenRequest()) {
				t.Errorf("request.json decodes to %s", dumpRequest(r))
			}
			return err
		}},
		{"response.json", respJSON, func(b []byte) error {
			r, err := UnmarshalResponseJSON(b)
			if err == nil && !equalResponse(r, goldenResponse(), false) {
				t.Errorf("response.json decodes to %s", dumpResponse(r))
			}
			return err
		}},
		{"request.wire", AppendRequestWire(nil, goldenRequest()), func(b []byte) error {
			r, err := DecodeRequestWire(b)
			if err == nil && !equalRequest(r, goldenRequest()) {
				t.Errorf("request.wire decodes to %s", dumpRequest(r))
			}
			return err
		}},
		{"response.wire", respWire, func(b []byte) error {
			r, err := DecodeResponseWire(b)
			if err == nil && !equalResponse(r, goldenResponse(), false) {
				t.Errorf("response.wire decodes to %s", dumpResponse(r))
			}
			return err
		}},
	} {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", g.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, g.got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(g.got, want) {
				t.Errorf("encoder output differs from %s (run with -update if the change is deliberate)\ngot  %q\nwant %q", path, g.got, want)
			}
			// The stored bytes must decode to the value, whatever the encoder does.
			if err := g.decode(want); err != nil {
				t.Errorf("decode %s: %v", path, err)
			}
		})
	}
}
