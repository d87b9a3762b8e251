package protocol

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRequestJSONRoundTrip(t *testing.T) {
	for _, tc := range requestCases() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := MarshalRequestJSON(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("MarshalRequestJSON wrote invalid JSON: %s", data)
			}
			got, err := UnmarshalRequestJSON(data)
			if err != nil {
				t.Fatalf("UnmarshalRequestJSON: %v\ninput: %.300s", err, data)
			}
			if !equalRequest(got, tc.req) {
				t.Errorf("round trip changed the request\ngot  %s\nwant %s", dumpRequest(got), dumpRequest(tc.req))
			}
			if got.Headers == nil {
				t.Error("decoded Headers is nil, want an empty header")
			}
			checkBodyEncoding(t, data, tc.req.Body)
		})
	}
}

func TestResponseJSONRoundTrip(t *testing.T) {
	for _, tc := range responseCases() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := MarshalResponseJSON(tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("MarshalResponseJSON wrote invalid JSON: %s", data)
			}
			got, err := UnmarshalResponseJSON(data)
			if err != nil {
				t.Fatalf("UnmarshalResponseJSON: %v\ninput: %.300s", err, data)
			}
			if got.Status != tc.resp.StatusOrDefault() {
				t.Errorf("status = %d, want %d", got.Status, tc.resp.StatusOrDefault())
			}
			if !equalResponse(got, tc.resp, true) {
				t.Errorf("round trip changed the response\ngot  %s\nwant %s", dumpResponse(got), dumpResponse(tc.resp))
			}
			if got.Headers == nil {
				t.Error("decoded Headers is nil, want an empty header")
			}
			checkBodyEncoding(t, data, tc.resp.Body)
		})
	}
}

// checkBodyEncoding checks that a JSON message carries body as a plain
// string when it is UTF-8 and as base64 otherwise, and always writes "v": 1
// and the legacy envelope fields.
func checkBodyEncoding(t *testing.T, data, body []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m["v"] != float64(1) {
		t.Errorf(`"v" = %v, want 1`, m["v"])
	}
	for _, key := range []string{"headers", "body"} {
		if _, ok := m[key]; !ok {
			t.Errorf("key %q missing", key)
		}
	}
	if _, ok := m["headers"].(map[string]any); !ok {
		t.Errorf(`"headers" = %v, want an object`, m["headers"])
	}
	enc, hasEnc := m["body_encoding"]
	if utf8.Valid(body) {
		if hasEnc {
			t.Errorf("UTF-8 body has body_encoding %v", enc)
		}
		if m["body"] != string(body) {
			t.Errorf("UTF-8 body travels as %.80q, want the text itself", m["body"])
		}
	} else if enc != BodyEncodingBase64 {
		t.Errorf("binary body has body_encoding %v, want %q", enc, BodyEncodingBase64)
	}
}

func TestMarshalRequestJSONFields(t *testing.T) {
	data, err := MarshalRequestJSON(&Request{
		Method: "GET", URI: "/s?a=1&a=2&b=x%20y", Path: "/s", RawQuery: "a=1&a=2&b=x%20y",
		Headers: http.Header{"Accept": {"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		V        int                 `json:"v"`
		Method   string              `json:"method"`
		URI      string              `json:"uri"`
		Headers  map[string][]string `json:"headers"`
		Query    map[string][]string `json:"query"`
		RawQuery string              `json:"raw_query"`
		Path     string              `json:"path"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.V != 1 || m.Method != "GET" || m.URI != "/s?a=1&a=2&b=x%20y" || m.Path != "/s" || m.RawQuery != "a=1&a=2&b=x%20y" {
		t.Errorf("fields: %+v", m)
	}
	if !slices.Equal(m.Headers["Accept"], []string{"a", "b"}) {
		t.Errorf("headers = %v", m.Headers)
	}
	if !slices.Equal(m.Query["a"], []string{"1", "2"}) || !slices.Equal(m.Query["b"], []string{"x y"}) || len(m.Query) != 2 {
		t.Errorf("query = %v", m.Query)
	}
	// An absent traceparent is left out; the other fields are always there.
	if bytes.Contains(data, []byte("traceparent")) {
		t.Errorf("empty traceparent written: %s", data)
	}
	for _, key := range []string{`"host":`, `"scheme":`, `"proto":`, `"remote_addr":`, `"request_id":`, `"function":`, `"function_version":`} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("key %s missing: %s", key, data)
		}
	}
}

func TestMarshalRequestJSONNilHeadersAndQuery(t *testing.T) {
	data, err := MarshalRequestJSON(&Request{})
	if err != nil {
		t.Fatal(err)
	}
	// Guests written against the v1 envelope range over these maps.
	for _, want := range []string{`"headers":{}`, `"query":{}`, `"body":""`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("%s missing from %s", want, data)
		}
	}
}

func TestMarshalResponseJSONInvalidStatus(t *testing.T) {
	for _, s := range []int{-1, 1, 42, 99, 600, 1000} {
		_, err := MarshalResponseJSON(&Response{Status: s})
		wantErr(t, err, ErrInvalidStatus)
	}
}

func TestMarshalResponseJSONZeroStatus(t *testing.T) {
	data, err := MarshalResponseJSON(&Response{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"status":200,"headers":{},"body":""}`; string(data) != want {
		t.Errorf("got %s, want %s", data, want)
	}
}

func TestUnmarshalRequestJSONLegacy(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *Request
	}{
		{
			name: "v1 envelope",
			in: `{"method":"POST","uri":"/api/users?id=7&tag=a&tag=b",` +
				`"headers":{"Content-Type":["application/json"],"Accept":["text/html","*/*"]},"body":"{\"name\":\"ada\"}"}`,
			want: &Request{Method: "POST", URI: "/api/users?id=7&tag=a&tag=b", Path: "/api/users",
				RawQuery: "id=7&tag=a&tag=b",
				Headers:  http.Header{"Content-Type": {"application/json"}, "Accept": {"text/html", "*/*"}},
				Body:     []byte(`{"name":"ada"}`)},
		},
		{
			name: "escaped path",
			in:   `{"method":"GET","uri":"/files/a%20b%2Fc?x=%20"}`,
			want: &Request{Method: "GET", URI: "/files/a%20b%2Fc?x=%20", Path: "/files/a b/c", RawQuery: "x=%20"},
		},
		{
			name: "absolute form",
			in:   `{"method":"GET","uri":"http://example.com/x?y=1"}`,
			want: &Request{Method: "GET", URI: "http://example.com/x?y=1", Path: "/x", RawQuery: "y=1"},
		},
		{
			name: "no query",
			in:   `{"method":"DELETE","uri":"/items/9","headers":{},"body":""}`,
			want: &Request{Method: "DELETE", URI: "/items/9", Path: "/items/9"},
		},
		{
			name: "unparseable uri leaves path empty",
			in:   `{"method":"GET","uri":"no slash"}`,
			want: &Request{Method: "GET", URI: "no slash"},
		},
		{
			name: "explicit path wins over uri",
			in:   `{"v":1,"method":"GET","uri":"/a?b=1","path":"/rewritten","raw_query":"c=2"}`,
			want: &Request{Method: "GET", URI: "/a?b=1", Path: "/rewritten", RawQuery: "c=2"},
		},
		{
			name: "explicit raw_query kept when path is derived",
			in:   `{"method":"GET","uri":"/a?b=1","raw_query":"c=2"}`,
			want: &Request{Method: "GET", URI: "/a?b=1", Path: "/a", RawQuery: "c=2"},
		},
		{
			name: "query object is ignored",
			in:   `{"method":"GET","uri":"/q?a=1","query":{"zzz":["ignored"]}}`,
			want: &Request{Method: "GET", URI: "/q?a=1", Path: "/q", RawQuery: "a=1"},
		},
		{
			name: "version 0 is version 1",
			in:   `{"v":0,"method":"GET"}`,
			want: &Request{Method: "GET"},
		},
		{
			name: "header names are canonicalised",
			in:   `{"headers":{"content-type":["text/plain"],"x-request-id":["42"]}}`,
			want: &Request{Headers: http.Header{"Content-Type": {"text/plain"}, "X-Request-Id": {"42"}}},
		},
		{
			name: "names differing in case merge in sorted order",
			in:   `{"headers":{"x-a":["3"],"X-A":["1","2"],"X-a":["x"]}}`,
			want: &Request{Headers: http.Header{"X-A": {"1", "2", "x", "3"}}},
		},
		{
			name: "null headers and body",
			in:   `{"method":"GET","headers":null,"body":null}`,
			want: &Request{Method: "GET"},
		},
		{
			name: "base64 body",
			in:   `{"method":"PUT","body":"AAH/","body_encoding":"base64"}`,
			want: &Request{Method: "PUT", Body: []byte{0, 1, 0xff}},
		},
		{
			name: "empty base64 body",
			in:   `{"body":"","body_encoding":"base64"}`,
			want: &Request{},
		},
		{
			name: "unknown keys ignored",
			in:   `{"method":"GET","future_field":{"nested":[1,2,3]},"x":null}`,
			want: &Request{Method: "GET"},
		},
		{
			name: "white space around the object",
			in:   " \r\n\t{\"method\":\"GET\"}\n\n",
			want: &Request{Method: "GET"},
		},
		{
			name: "all metadata",
			in: `{"method":"GET","uri":"/","path":"/","host":"h","scheme":"https","proto":"HTTP/3.0",` +
				`"remote_addr":"[::1]:9","request_id":"r","traceparent":"t","function":"f","function_version":"fv"}`,
			want: &Request{Method: "GET", URI: "/", Path: "/", Host: "h", Scheme: "https", Proto: "HTTP/3.0",
				RemoteAddr: "[::1]:9", RequestID: "r", TraceParent: "t", Function: "f", FunctionVersion: "fv"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalRequestJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !equalRequest(got, tc.want) {
				t.Errorf("got  %s\nwant %s", dumpRequest(got), dumpRequest(tc.want))
			}
			if got.Headers == nil {
				t.Error("Headers is nil")
			}
			for name := range got.Headers {
				if name != http.CanonicalHeaderKey(name) {
					t.Errorf("header name %q is not canonical", name)
				}
			}
		})
	}
}

func TestUnmarshalResponseJSONLegacy(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *Response
	}{
		{
			name: "v1 envelope with a string header",
			in:   `{"status":201,"headers":{"X":"a"},"body":"hi"}`,
			want: &Response{Status: 201, Headers: http.Header{"X": {"a"}}, Body: []byte("hi")},
		},
		{
			name: "no status means 200",
			in:   `{"headers":{"X":["a","b"]}}`,
			want: &Response{Status: 0, Headers: http.Header{"X": {"a", "b"}}},
		},
		{
			name: "empty object",
			in:   `{}`,
			want: &Response{},
		},
		{
			name: "white space around the object",
			in:   "\n\t {\"status\":204}\r\n\n",
			want: &Response{Status: 204},
		},
		{
			name: "string and list values mixed",
			in:   `{"status":200,"headers":{"Content-Type":"text/plain","Set-Cookie":["a=1","b=2"],"X-Empty":""}}`,
			want: &Response{Status: 200, Headers: http.Header{
				"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, "X-Empty": {""}}},
		},
		{
			name: "names are canonicalised",
			in:   `{"headers":{"content-type":"text/html","x-powered-by":["gojinn"]}}`,
			want: &Response{Headers: http.Header{"Content-Type": {"text/html"}, "X-Powered-By": {"gojinn"}}},
		},
		{
			name: "names differing in case merge in sorted order",
			in:   `{"headers":{"x-a":"3","X-A":["1","2"],"X-a":"x"}}`,
			want: &Response{Headers: http.Header{"X-A": {"1", "2", "x", "3"}}},
		},
		{
			name: "null, empty list and null body carry nothing",
			in:   `{"headers":{"X-Null":null,"X-None":[]},"body":null}`,
			want: &Response{},
		},
		{
			name: "base64 body",
			in:   `{"status":200,"body":"iVBORw0KGgo=","body_encoding":"base64"}`,
			want: &Response{Status: 200, Body: []byte("\x89PNG\r\n\x1a\n")},
		},
		{
			name: "explicit version",
			in:   `{"v":1,"status":418}`,
			want: &Response{Status: 418},
		},
		{
			name: "unknown keys ignored",
			in:   `{"status":200,"trailers":{"X":"y"},"extra":[1,{}]}`,
			want: &Response{Status: 200},
		},
		{
			name: "escaped strings",
			in:   `{"headers":{"X-Q":"\"\\\/\u00e9"},"body":"\u65e5\ud83c\udf89\n"}`,
			want: &Response{Headers: http.Header{"X-Q": {`"\/é`}}, Body: []byte("日🎉\n")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalResponseJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !equalResponse(got, tc.want, false) {
				t.Errorf("got  %s\nwant %s", dumpResponse(got), dumpResponse(tc.want))
			}
			if got.Headers == nil {
				t.Error("Headers is nil")
			}
		})
	}
	r, err := UnmarshalResponseJSON([]byte(`{"headers":{"X":["a","b"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusOrDefault() != 200 {
		t.Errorf("StatusOrDefault() = %d, want 200", r.StatusOrDefault())
	}
}

// TestUnmarshalJSONMergeIsDeterministic guards against ranging over a map
// when merging names that differ only in case.
func TestUnmarshalJSONMergeIsDeterministic(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"headers":{`)
	for i, variant := range []string{"x-merge", "X-MERGE", "X-Merge", "x-MeRgE", "X-mERGE", "x-mergE"} {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + variant + `":["` + variant + `"]`)
	}
	b.WriteString(`}}`)
	in := b.String()
	want := []string{"X-MERGE", "X-Merge", "X-mERGE", "x-MeRgE", "x-mergE", "x-merge"}
	for range 50 {
		resp, err := UnmarshalResponseJSON([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Headers["X-Merge"]; !slices.Equal(got, want) {
			t.Fatalf("response: X-Merge = %q, want %q", got, want)
		}
		req, err := UnmarshalRequestJSON([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Headers["X-Merge"]; !slices.Equal(got, want) {
			t.Fatalf("request: X-Merge = %q, want %q", got, want)
		}
	}
}

type jsonErrCase struct {
	name string
	in   string
	want error
}

// jsonCommonErrCases are rejected by both JSON decoders.
var jsonCommonErrCases = []jsonErrCase{
	{"empty", ``, ErrMalformed},
	{"white space only", " \n\t", ErrMalformed},
	{"bad JSON", `{"method":`, ErrMalformed},
	{"not JSON", `hello`, ErrMalformed},
	{"unquoted key", `{method:"GET"}`, ErrMalformed},
	{"single quotes", `{'status':200}`, ErrMalformed},
	{"trailing comma", `{"body":"x",}`, ErrMalformed},
	{"trailing garbage", `{"body":"x"} x`, ErrMalformed},
	{"two objects", `{}{}`, ErrMalformed},
	{"trailing NUL", "{}\x00", ErrMalformed},
	{"null", `null`, ErrMalformed},
	{"array", `[]`, ErrMalformed},
	{"string", `"{}"`, ErrMalformed},
	{"number", `200`, ErrMalformed},
	{"version 2", `{"v":2}`, ErrUnsupportedVersion},
	{"version 2 with v2 shaped fields", `{"v":2,"headers":[["X","y"]],"body":{"ref":1}}`, ErrUnsupportedVersion},
	{"version -1", `{"v":-1}`, ErrUnsupportedVersion},
	{"version as string", `{"v":"1"}`, ErrMalformed},
	{"fractional version", `{"v":1.5}`, ErrMalformed},
	{"unknown body_encoding", `{"body":"aGk=","body_encoding":"base32"}`, ErrMalformed},
	{"body_encoding is case sensitive", `{"body":"aGk=","body_encoding":"BASE64"}`, ErrMalformed},
	{"invalid base64", `{"body":"not base64!","body_encoding":"base64"}`, ErrMalformed},
	{"base64 missing padding", `{"body":"aGk","body_encoding":"base64"}`, ErrMalformed},
	{"url-safe base64", `{"body":"_-8=","body_encoding":"base64"}`, ErrMalformed},
	{"body is a number", `{"body":12}`, ErrMalformed},
	{"body is an array", `{"body":[104,105]}`, ErrMalformed},
	{"header value is a number", `{"headers":{"X":[1]}}`, ErrMalformed},
	{"headers is a list", `{"headers":[]}`, ErrMalformed},
	{"headers is a string", `{"headers":"X: y"}`, ErrMalformed},
	{"header value is an object", `{"headers":{"X":{"a":"b"}}}`, ErrMalformed},
	{"header list holds a list", `{"headers":{"X":[["a"]]}}`, ErrMalformed},
}

func TestUnmarshalRequestJSONErrors(t *testing.T) {
	cases := append(slices.Clone(jsonCommonErrCases),
		jsonErrCase{"header value is a bare number", `{"headers":{"X":1}}`, ErrMalformed},
		jsonErrCase{"header value is a bare bool", `{"headers":{"X":true}}`, ErrMalformed},
		jsonErrCase{"method is a number", `{"method":1}`, ErrMalformed},
		jsonErrCase{"uri is an object", `{"uri":{}}`, ErrMalformed},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := UnmarshalRequestJSON([]byte(tc.in))
			if r != nil {
				t.Errorf("got a request with the error: %s", dumpRequest(r))
			}
			wantErr(t, err, tc.want)
		})
	}
}

func TestUnmarshalResponseJSONErrors(t *testing.T) {
	cases := append(slices.Clone(jsonCommonErrCases),
		jsonErrCase{"status 42", `{"status":42}`, ErrInvalidStatus},
		jsonErrCase{"status 99", `{"status":99}`, ErrInvalidStatus},
		jsonErrCase{"status 600", `{"status":600}`, ErrInvalidStatus},
		jsonErrCase{"status -1", `{"status":-1}`, ErrInvalidStatus},
		jsonErrCase{"status 1000", `{"status":1000}`, ErrInvalidStatus},
		jsonErrCase{"status overflows int", `{"status":99999999999999999999999}`, ErrMalformed},
		jsonErrCase{"status as string", `{"status":"200"}`, ErrMalformed},
		jsonErrCase{"fractional status", `{"status":200.5}`, ErrMalformed},
		jsonErrCase{"header value is a bare number", `{"headers":{"X":1}}`, ErrMalformed},
		jsonErrCase{"header value is a bare bool", `{"headers":{"X":true}}`, ErrMalformed},
		jsonErrCase{"header list mixes strings and numbers", `{"headers":{"X":["a",2]}}`, ErrMalformed},
		jsonErrCase{"header name with a space", `{"headers":{"Bad Name":"x"}}`, ErrMalformed},
		jsonErrCase{"header name with a colon", `{"headers":{"X-A:":"x"}}`, ErrMalformed},
		jsonErrCase{"header name with a newline", `{"headers":{"X\nSet-Cookie":"x"}}`, ErrMalformed},
		jsonErrCase{"empty header name", `{"headers":{"":"x"}}`, ErrMalformed},
		jsonErrCase{"non-ASCII header name", `{"headers":{"Grüße":"x"}}`, ErrMalformed},
		jsonErrCase{"header value with CR", `{"headers":{"X":"a\rb"}}`, ErrMalformed},
		jsonErrCase{"header value with LF", `{"headers":{"X":"a\nb"}}`, ErrMalformed},
		jsonErrCase{"header value with CRLF injection", `{"headers":{"X":"a\r\nSet-Cookie: evil=1"}}`, ErrMalformed},
		jsonErrCase{"header value with NUL", `{"headers":{"X":"a\u0000b"}}`, ErrMalformed},
		jsonErrCase{"header list value with LF", `{"headers":{"X":["ok","a\nb"]}}`, ErrMalformed},
		jsonErrCase{"version 2 with a bad status", `{"v":2,"status":"Created"}`, ErrUnsupportedVersion},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := UnmarshalResponseJSON([]byte(tc.in))
			if r != nil {
				t.Errorf("got a response with the error: %s", dumpResponse(r))
			}
			wantErr(t, err, tc.want)
		})
	}
}

// TestJSONDecodeDoesNotAlias decodes, overwrites the input and checks that
// the decoded values did not change.
func TestJSONDecodeDoesNotAlias(t *testing.T) {
	for _, tc := range requestCases() {
		data, err := MarshalRequestJSON(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalRequestJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		before := cloneRequest(got)
		clobber(data)
		if !equalRequest(got, before) {
			t.Errorf("%s: decoded request changed with its input", tc.name)
		}
	}
	for _, tc := range responseCases() {
		data, err := MarshalResponseJSON(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalResponseJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		before := cloneResponse(got)
		clobber(data)
		if !equalResponse(got, before, false) {
			t.Errorf("%s: decoded response changed with its input", tc.name)
		}
	}
	// The legacy string-valued header path too.
	data := []byte(`{"status":201,"headers":{"X":"a","Y":["b","c"]},"body":"hi"}`)
	got, err := UnmarshalResponseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	before := cloneResponse(got)
	clobber(data)
	if !equalResponse(got, before, false) {
		t.Error("decoded legacy response changed with its input")
	}
}

func clobber(b []byte) {
	for i := range b {
		b[i] = 'Z'
	}
}

// TestJSONEncodersDeterministic checks that encoding the same value twice
// gives the same bytes, whatever the map order.
func TestJSONEncodersDeterministic(t *testing.T) {
	req := &Request{Method: "GET", Headers: manyHeaders(40), RawQuery: "b=2&a=1&c=3&a=0"}
	resp := &Response{Status: 200, Headers: manyHeaders(40)}
	first, _ := MarshalRequestJSON(req)
	firstResp, _ := MarshalResponseJSON(resp)
	for range 20 {
		if again, _ := MarshalRequestJSON(req); !bytes.Equal(again, first) {
			t.Fatal("MarshalRequestJSON is not deterministic")
		}
		if again, _ := MarshalResponseJSON(resp); !bytes.Equal(again, firstResp) {
			t.Fatal("MarshalResponseJSON is not deterministic")
		}
	}
}
