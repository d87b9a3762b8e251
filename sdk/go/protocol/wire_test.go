package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Helpers that build wire messages by hand, independently of the encoders.

const (
	reqMagic  = "GJQ\x01"
	respMagic = "GJS\x01"
)

func wireMsg(magic string, fields ...[]byte) []byte {
	return append([]byte(magic), bytes.Join(fields, nil)...)
}

func wireField(tag byte, v string) []byte {
	b := binary.AppendUvarint([]byte{tag}, uint64(len(v)))
	return append(b, v...)
}

func wireHeader(tag byte, name, value string) []byte {
	v := binary.AppendUvarint(nil, uint64(len(name)))
	v = append(v, name...)
	v = append(v, value...)
	return wireField(tag, string(v))
}

func wireStatus(s uint64) []byte {
	return wireField(tagStatus, string(binary.AppendUvarint(nil, s)))
}

// fieldBoundaries returns the offsets at which a well-formed message may end:
// after the magic and after every field.
func fieldBoundaries(t *testing.T, msg []byte) []int {
	t.Helper()
	ends := []int{4}
	for off := 4; off < len(msg); {
		n, k := binary.Uvarint(msg[off+1:])
		if k <= 0 {
			t.Fatalf("bad test message at %d", off)
		}
		off += 1 + k + int(n)
		ends = append(ends, off)
	}
	if ends[len(ends)-1] != len(msg) {
		t.Fatal("bad test message: fields overrun")
	}
	return ends
}

func TestRequestWireRoundTrip(t *testing.T) {
	for _, tc := range requestCases() {
		t.Run(tc.name, func(t *testing.T) {
			data := AppendRequestWire(nil, tc.req)
			if !bytes.HasPrefix(data, []byte(reqMagic)) {
				t.Fatalf("no request magic: %q", data[:min(len(data), 8)])
			}
			got, err := DecodeRequestWire(data)
			if err != nil {
				t.Fatal(err)
			}
			if !equalRequest(got, tc.req) {
				t.Errorf("round trip changed the request\ngot  %s\nwant %s", dumpRequest(got), dumpRequest(tc.req))
			}
			if got.Headers == nil {
				t.Error("decoded Headers is nil")
			}
		})
	}
}

func TestResponseWireRoundTrip(t *testing.T) {
	for _, tc := range responseCases() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := AppendResponseWire(nil, tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte(respMagic)) {
				t.Fatalf("no response magic: %q", data[:min(len(data), 8)])
			}
			got, err := DecodeResponseWire(data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.resp.StatusOrDefault() {
				t.Errorf("status = %d, want %d", got.Status, tc.resp.StatusOrDefault())
			}
			if !equalResponse(got, tc.resp, true) {
				t.Errorf("round trip changed the response\ngot  %s\nwant %s", dumpResponse(got), dumpResponse(tc.resp))
			}
			if got.Headers == nil {
				t.Error("decoded Headers is nil")
			}
		})
	}
}

// TestCrossFormRoundTrip carries each case through one form, then the other.
func TestCrossFormRoundTrip(t *testing.T) {
	for _, tc := range requestCases() {
		w, err := DecodeRequestWire(AppendRequestWire(nil, tc.req))
		if err != nil {
			t.Fatal(err)
		}
		data, err := MarshalRequestJSON(w)
		if err != nil {
			t.Fatal(err)
		}
		j, err := UnmarshalRequestJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		if !equalRequest(j, tc.req) {
			t.Errorf("%s: wire then JSON changed the request\ngot  %s", tc.name, dumpRequest(j))
		}
	}
	for _, tc := range responseCases() {
		data, err := MarshalResponseJSON(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		j, err := UnmarshalResponseJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := AppendResponseWire(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		w, err := DecodeResponseWire(wire)
		if err != nil {
			t.Fatal(err)
		}
		if !equalResponse(w, tc.resp, true) {
			t.Errorf("%s: JSON then wire changed the response\ngot  %s", tc.name, dumpResponse(w))
		}
	}
}

func TestAppendRequestWireAppends(t *testing.T) {
	prefix := []byte("prefix")
	r := benchRequest()
	out := AppendRequestWire(slices.Clone(prefix), r)
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("prefix lost: %q", out[:10])
	}
	if !bytes.Equal(out[len(prefix):], AppendRequestWire(nil, r)) {
		t.Error("appending changed the encoding")
	}
}

func TestAppendResponseWireAppends(t *testing.T) {
	prefix := []byte("prefix")
	r := benchResponse()
	out, err := AppendResponseWire(slices.Clone(prefix), r)
	if err != nil {
		t.Fatal(err)
	}
	alone, _ := AppendResponseWire(nil, r)
	if !bytes.HasPrefix(out, prefix) || !bytes.Equal(out[len(prefix):], alone) {
		t.Errorf("got %q", out)
	}
}

func TestAppendResponseWireInvalidStatus(t *testing.T) {
	for _, s := range []int{-1, 1, 42, 99, 600, 1000} {
		dst := []byte("keep")
		out, err := AppendResponseWire(dst, &Response{Status: s})
		wantErr(t, err, ErrInvalidStatus)
		if string(out) != "keep" {
			t.Errorf("status %d: dst changed to %q", s, out)
		}
	}
}

// TestWireLayout pins the exact bytes of small messages, independently of
// the golden files.
func TestWireLayout(t *testing.T) {
	req := &Request{Method: "GET", URI: "/a?b", Path: "/a", RawQuery: "b",
		Headers: http.Header{"X-B": {"2"}, "X-A": {"1", ""}}, Body: []byte("hi"), Function: "f"}
	want := wireMsg(reqMagic,
		wireField(tagMethod, "GET"), wireField(tagURI, "/a?b"), wireField(tagPath, "/a"), wireField(tagRawQuery, "b"),
		wireHeader(tagHeader, "X-A", "1"), wireHeader(tagHeader, "X-A", ""), wireHeader(tagHeader, "X-B", "2"),
		wireField(tagBody, "hi"), wireField(tagFunction, "f"))
	if got := AppendRequestWire(nil, req); !bytes.Equal(got, want) {
		t.Errorf("request\ngot  %q\nwant %q", got, want)
	}
	if got := AppendRequestWire(nil, &Request{}); string(got) != reqMagic {
		t.Errorf("empty request = %q, want just the magic", got)
	}

	resp := &Response{Headers: http.Header{"B": {"2"}, "A": {"1"}}, Body: []byte{0xff}}
	want = wireMsg(respMagic, wireStatus(200), wireHeader(tagRespHeader, "A", "1"),
		wireHeader(tagRespHeader, "B", "2"), wireField(tagRespBody, "\xff"))
	if got, _ := AppendResponseWire(nil, resp); !bytes.Equal(got, want) {
		t.Errorf("response\ngot  %q\nwant %q", got, want)
	}
	if got, _ := AppendResponseWire(nil, &Response{Status: 404}); !bytes.Equal(got, wireMsg(respMagic, wireStatus(404))) {
		t.Errorf("status-only response = %q", got)
	}
}

// TestWireEncodersSortHeaders checks that headers are written in ascending
// order of name, whatever the map order, including past the 32 names the
// encoders sort without allocating.
func TestWireEncodersSortHeaders(t *testing.T) {
	for _, n := range []int{0, 1, 2, 8, 32, 33, 100} {
		h := manyHeaders(n)
		reqOut := AppendRequestWire(nil, &Request{Headers: h})
		respOut, _ := AppendResponseWire(nil, &Response{Headers: h})
		for range 10 {
			if again := AppendRequestWire(nil, &Request{Headers: h}); !bytes.Equal(again, reqOut) {
				t.Fatalf("%d headers: AppendRequestWire is not deterministic", n)
			}
			if again, _ := AppendResponseWire(nil, &Response{Headers: h}); !bytes.Equal(again, respOut) {
				t.Fatalf("%d headers: AppendResponseWire is not deterministic", n)
			}
		}
		for _, out := range [][]byte{reqOut, respOut} {
			var names []string
			for off := 4; off < len(out); {
				tag := out[off]
				l, k := binary.Uvarint(out[off+1:])
				v := out[off+1+k : off+1+k+int(l)]
				if (out[2] == 'Q' && tag == tagHeader) || (out[2] == 'S' && tag == tagRespHeader) {
					name, _, err := splitHeader(v)
					if err != nil {
						t.Fatal(err)
					}
					names = append(names, string(name))
				}
				off += 1 + k + int(l)
			}
			if len(names) != 2*n || !slices.IsSorted(names) {
				t.Errorf("%d headers: names written in the order %q", n, names)
			}
		}
	}
}

func TestDecodeRequestWireFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want *Request
	}{
		{"magic only", []byte(reqMagic), &Request{}},
		{
			"unknown tags skipped",
			wireMsg(reqMagic, wireField(0, "zero"), wireField(tagMethod, "GET"), wireField(99, "x"),
				wireField(200, strings.Repeat("y", 300)), wireHeader(tagHeader, "X", "1"), wireField(255, ""),
				wireField(tagBody, "b"), wireField(15, "next tag"), wireField(127, "\x00\xff")),
			&Request{Method: "GET", Headers: http.Header{"X": {"1"}}, Body: []byte("b")},
		},
		{
			"fields in any order",
			wireMsg(reqMagic, wireField(tagFunctionVersion, "v"), wireField(tagBody, "b"), wireField(tagMethod, "M"),
				wireHeader(tagHeader, "A", "1"), wireField(tagPath, "/p"), wireHeader(tagHeader, "A", "2")),
			&Request{Method: "M", Path: "/p", FunctionVersion: "v", Body: []byte("b"), Headers: http.Header{"A": {"1", "2"}}},
		},
		{
			"last field wins",
			wireMsg(reqMagic, wireField(tagMethod, "GET"), wireField(tagMethod, "POST"),
				wireField(tagBody, "first"), wireField(tagBody, "second")),
			&Request{Method: "POST", Body: []byte("second")},
		},
		{
			"empty fields clear earlier ones",
			wireMsg(reqMagic, wireField(tagMethod, "GET"), wireField(tagMethod, ""),
				wireField(tagBody, "first"), wireField(tagBody, "")),
			&Request{},
		},
		{
			"names canonicalised and merged in message order",
			wireMsg(reqMagic, wireHeader(tagHeader, "x-a", "1"), wireHeader(tagHeader, "X-B", "b"),
				wireHeader(tagHeader, "X-A", "2"), wireHeader(tagHeader, "x-A", "3")),
			&Request{Headers: http.Header{"X-A": {"1", "2", "3"}, "X-B": {"b"}}},
		},
		{
			"request headers are not validated",
			wireMsg(reqMagic, wireHeader(tagHeader, "", "empty name"), wireHeader(tagHeader, "Bad Name", "a\r\nb")),
			&Request{Headers: http.Header{"": {"empty name"}, "Bad Name": {"a\r\nb"}}},
		},
		{
			"header value may be empty, name length may be long",
			wireMsg(reqMagic, wireHeader(tagHeader, "X-Empty", ""), wireHeader(tagHeader, "X-"+strings.Repeat("l", 200), "v")),
			&Request{Headers: http.Header{"X-Empty": {""}, "X-" + strings.Repeat("L", 1) + strings.Repeat("l", 199): {"v"}}},
		},
		{
			"non-minimal uvarint length",
			wireMsg(reqMagic, []byte{tagMethod, 0x83, 0x80, 0x00}, []byte("GET")),
			&Request{Method: "GET"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequestWire(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !equalRequest(got, tc.want) {
				t.Errorf("got  %s\nwant %s", dumpRequest(got), dumpRequest(tc.want))
			}
		})
	}
}

func TestDecodeResponseWireFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want *Response
	}{
		{"magic only", []byte(respMagic), &Response{}},
		{"explicit status 0", wireMsg(respMagic, wireStatus(0)), &Response{}},
		{"status 200", wireMsg(respMagic, wireStatus(200)), &Response{Status: 200}},
		{"status 599", wireMsg(respMagic, wireStatus(599)), &Response{Status: 599}},
		{"last status wins", wireMsg(respMagic, wireStatus(500), wireStatus(201)), &Response{Status: 201}},
		{
			"unknown tags skipped",
			wireMsg(respMagic, wireField(0, "x"), wireStatus(202), wireField(4, "future"), wireField(tagHeader, "req tag"),
				wireHeader(tagRespHeader, "A", "1"), wireField(255, strings.Repeat("z", 200)), wireField(tagRespBody, "b"), wireField(9, "")),
			&Response{Status: 202, Headers: http.Header{"A": {"1"}}, Body: []byte("b")},
		},
		{
			"names canonicalised and merged in message order",
			wireMsg(respMagic, wireHeader(tagRespHeader, "set-cookie", "a=1"), wireHeader(tagRespHeader, "Set-Cookie", "b=2"),
				wireHeader(tagRespHeader, "SET-COOKIE", "c=3"), wireHeader(tagRespHeader, "content-type", "text/plain")),
			&Response{Headers: http.Header{"Set-Cookie": {"a=1", "b=2", "c=3"}, "Content-Type": {"text/plain"}}},
		},
		{
			"last body wins, empty included",
			wireMsg(respMagic, wireField(tagRespBody, "first"), wireField(tagRespBody, "")),
			&Response{},
		},
		{
			"tab and obs-text in a value",
			wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\tb\xff")),
			&Response{Headers: http.Header{"X": {"a\tb\xff"}}},
		},
		{
			"non-minimal status uvarint",
			wireMsg(respMagic, wireField(tagStatus, "\xc8\x81\x00")),
			&Response{Status: 200},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeResponseWire(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !equalResponse(got, tc.want, false) {
				t.Errorf("got  %s\nwant %s", dumpResponse(got), dumpResponse(tc.want))
			}
		})
	}
}

type wireErrCase struct {
	name string
	in   []byte
	want error
}

// wireCommonErrCases are framing errors, given for the request magic; the
// tests swap in the response magic for the response decoder.
var wireCommonErrCases = []wireErrCase{
	{"empty", nil, ErrMalformed},
	{"one byte", []byte("G"), ErrMalformed},
	{"three bytes", []byte("GJQ"), ErrMalformed},
	{"wrong magic", []byte("GJX\x01"), ErrMalformed},
	{"lower-case magic", []byte("gjq\x01"), ErrMalformed},
	{"JSON instead", []byte(`{"method":"GET"}`), ErrMalformed},
	{"version 2", []byte("GJQ\x02"), ErrUnsupportedVersion},
	{"version 0", []byte("GJQ\x00"), ErrUnsupportedVersion},
	{"version 255 with fields", wireMsg("GJQ\xff", wireField(1, "x")), ErrUnsupportedVersion},
	{"tag without length", wireMsg(reqMagic, []byte{1}), ErrMalformed},
	{"unterminated length", wireMsg(reqMagic, []byte{1, 0x80}), ErrMalformed},
	{"length longer than the rest", wireMsg(reqMagic, []byte{1, 5}, []byte("GET")), ErrMalformed},
	{"length overflows uvarint", wireMsg(reqMagic, []byte{1}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), ErrMalformed},
	{"length is 2^64-1", wireMsg(reqMagic, []byte{1}, binary.AppendUvarint(nil, 1<<64-1)), ErrMalformed},
	{"length is 2^63", wireMsg(reqMagic, []byte{1}, binary.AppendUvarint(nil, 1<<63), []byte("x")), ErrMalformed},
	{"length is max int32+1", wireMsg(reqMagic, []byte{1}, binary.AppendUvarint(nil, 1<<31), []byte("x")), ErrMalformed},
	{"eleven byte length", wireMsg(reqMagic, []byte{1}, bytes.Repeat([]byte{0x80}, 10), []byte{0x00}), ErrMalformed},
	{"unknown tag overruns", wireMsg(reqMagic, wireField(1, "GET"), []byte{99, 10, 'x'}), ErrMalformed},
	{"valid field then garbage byte", wireMsg(reqMagic, wireField(1, "GET"), []byte{7}), ErrMalformed},
}

func withMagic(in []byte, magic string) []byte {
	if len(in) >= 3 && string(in[:3]) == "GJQ" {
		out := slices.Clone(in)
		copy(out, magic[:3])
		return out
	}
	return in
}

func TestDecodeRequestWireErrors(t *testing.T) {
	cases := append(slices.Clone(wireCommonErrCases),
		wireErrCase{"response magic", wireMsg(respMagic, wireStatus(200)), ErrMalformed},
		wireErrCase{"header without name length", wireMsg(reqMagic, wireField(tagHeader, "")), ErrMalformed},
		wireErrCase{"header name length beyond field", wireMsg(reqMagic, wireField(tagHeader, "\x05abc")), ErrMalformed},
		wireErrCase{"header name length overflows", wireMsg(reqMagic, wireField(tagHeader, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")), ErrMalformed},
		wireErrCase{"bad header after good fields", wireMsg(reqMagic, wireField(tagMethod, "GET"), wireField(tagHeader, "\x80")), ErrMalformed},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRequestWire(tc.in)
			if r != nil {
				t.Errorf("got a request with the error: %s", dumpRequest(r))
			}
			wantErr(t, err, tc.want)
		})
	}
}

func TestDecodeResponseWireErrors(t *testing.T) {
	var cases []wireErrCase
	for _, tc := range wireCommonErrCases {
		tc.in = withMagic(tc.in, respMagic)
		cases = append(cases, tc)
	}
	cases = append(cases,
		wireErrCase{"request magic", wireMsg(reqMagic, wireField(tagMethod, "GET")), ErrMalformed},
		wireErrCase{"status 42", wireMsg(respMagic, wireStatus(42)), ErrInvalidStatus},
		wireErrCase{"status 99", wireMsg(respMagic, wireStatus(99)), ErrInvalidStatus},
		wireErrCase{"status 100 (informational, never final)", wireMsg(respMagic, wireStatus(100)), ErrInvalidStatus},
		wireErrCase{"status 101", wireMsg(respMagic, wireStatus(101)), ErrInvalidStatus},
		wireErrCase{"status 199", wireMsg(respMagic, wireStatus(199)), ErrInvalidStatus},
		wireErrCase{"status 600", wireMsg(respMagic, wireStatus(600)), ErrInvalidStatus},
		wireErrCase{"status 1000", wireMsg(respMagic, wireStatus(1000)), ErrInvalidStatus},
		wireErrCase{"status 2^64-1", wireMsg(respMagic, wireStatus(1<<64-1)), ErrInvalidStatus},
		wireErrCase{"status 2^63 (negative as int)", wireMsg(respMagic, wireStatus(1<<63)), ErrInvalidStatus},
		wireErrCase{"status 2^32+200 (200 as uint32)", wireMsg(respMagic, wireStatus(1<<32+200)), ErrInvalidStatus},
		wireErrCase{"status with trailing bytes", wireMsg(respMagic, wireField(tagStatus, "\xc8\x01\x00")), ErrMalformed},
		wireErrCase{"status with trailing garbage", wireMsg(respMagic, wireField(tagStatus, "\x7fxyz")), ErrMalformed},
		wireErrCase{"empty status", wireMsg(respMagic, wireField(tagStatus, "")), ErrMalformed},
		wireErrCase{"unterminated status", wireMsg(respMagic, wireField(tagStatus, "\xc8")), ErrMalformed},
		wireErrCase{"status uvarint overflows", wireMsg(respMagic, wireField(tagStatus, strings.Repeat("\xff", 10)+"\x01")), ErrMalformed},
		wireErrCase{"bad status after good one", wireMsg(respMagic, wireStatus(200), wireStatus(700)), ErrInvalidStatus},
		wireErrCase{"header without name length", wireMsg(respMagic, wireField(tagRespHeader, "")), ErrMalformed},
		wireErrCase{"header name length beyond field", wireMsg(respMagic, wireField(tagRespHeader, "\x05abc")), ErrMalformed},
		wireErrCase{"empty header name", wireMsg(respMagic, wireHeader(tagRespHeader, "", "x")), ErrMalformed},
		wireErrCase{"header name with a space", wireMsg(respMagic, wireHeader(tagRespHeader, "Bad Name", "x")), ErrMalformed},
		wireErrCase{"header name with a colon", wireMsg(respMagic, wireHeader(tagRespHeader, "X:", "x")), ErrMalformed},
		wireErrCase{"header name with CRLF", wireMsg(respMagic, wireHeader(tagRespHeader, "X\r\nY", "x")), ErrMalformed},
		wireErrCase{"non-ASCII header name", wireMsg(respMagic, wireHeader(tagRespHeader, "Grüße", "x")), ErrMalformed},
		wireErrCase{"header value with CR", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\rb")), ErrMalformed},
		wireErrCase{"header value with LF", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\nb")), ErrMalformed},
		wireErrCase{"header value with another control character", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\x01b")), ErrMalformed},
		wireErrCase{"header value with DEL", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\x7fb")), ErrMalformed},
		wireErrCase{"header value with CRLF injection", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\r\nSet-Cookie: evil=1")), ErrMalformed},
		wireErrCase{"header value with NUL", wireMsg(respMagic, wireHeader(tagRespHeader, "X", "a\x00b")), ErrMalformed},
		wireErrCase{"bad header after good fields", wireMsg(respMagic, wireStatus(200), wireHeader(tagRespHeader, "A", "1"),
			wireHeader(tagRespHeader, "B", "\n")), ErrMalformed},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeResponseWire(tc.in)
			if r != nil {
				t.Errorf("got a response with the error: %s", dumpResponse(r))
			}
			wantErr(t, err, tc.want)
		})
	}
}

// TestDecodeWireTruncated cuts valid messages at every offset: a cut at a
// field boundary is a shorter valid message, any other cut is an error.
func TestDecodeWireTruncated(t *testing.T) {
	reqs := []*Request{goldenRequest(), benchRequest(), {Method: "POST", Body: allBytes(),
		Headers: http.Header{"X-Long": {strings.Repeat("v", 300)}}}}
	for _, r := range reqs {
		msg := AppendRequestWire(nil, r)
		ends := fieldBoundaries(t, msg)
		for i := 0; i <= len(msg); i++ {
			cut := slices.Clone(msg[:i]) // a fresh slice, so reads past i would show under -race or ASan
			got, err := DecodeRequestWire(cut)
			if slices.Contains(ends, i) {
				if err != nil {
					t.Errorf("request cut at field boundary %d/%d: %v", i, len(msg), err)
				}
				if i == len(msg) && !equalRequest(got, r) {
					t.Errorf("whole request decodes to %s", dumpRequest(got))
				}
				continue
			}
			if err == nil {
				t.Errorf("request cut at %d/%d decoded: %s", i, len(msg), dumpRequest(got))
			} else if !errorsIsAny(err, ErrMalformed) {
				t.Errorf("request cut at %d/%d: %v, want ErrMalformed", i, len(msg), err)
			}
		}
	}
	resps := []*Response{goldenResponse(), benchResponse(), {Status: 200, Body: allBytes(),
		Headers: http.Header{"X-Long": {strings.Repeat("v", 300)}}}}
	for _, r := range resps {
		msg, err := AppendResponseWire(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		ends := fieldBoundaries(t, msg)
		for i := 0; i <= len(msg); i++ {
			cut := slices.Clone(msg[:i])
			got, err := DecodeResponseWire(cut)
			if slices.Contains(ends, i) {
				if err != nil {
					t.Errorf("response cut at field boundary %d/%d: %v", i, len(msg), err)
				}
				continue
			}
			if err == nil {
				t.Errorf("response cut at %d/%d decoded: %s", i, len(msg), dumpResponse(got))
			} else if !errorsIsAny(err, ErrMalformed, ErrInvalidStatus) {
				t.Errorf("response cut at %d/%d: %v", i, len(msg), err)
			}
		}
	}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if err != nil && errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestWireDecodeDoesNotAlias decodes, overwrites the input and checks that
// the decoded values did not change.
func TestWireDecodeDoesNotAlias(t *testing.T) {
	for _, tc := range requestCases() {
		data := AppendRequestWire(nil, tc.req)
		got, err := DecodeRequestWire(data)
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
		data, err := AppendResponseWire(nil, tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResponseWire(data)
		if err != nil {
			t.Fatal(err)
		}
		before := cloneResponse(got)
		clobber(data)
		if !equalResponse(got, before, false) {
			t.Errorf("%s: decoded response changed with its input", tc.name)
		}
	}
}

// TestWireDecodedValuesAreIndependent checks that appending to one decoded
// header value list cannot overwrite another's, since the decoders share
// one backing array between them.
func TestWireDecodedValuesAreIndependent(t *testing.T) {
	data := wireMsg(reqMagic, wireHeader(tagHeader, "A", "1"), wireHeader(tagHeader, "B", "2"), wireHeader(tagHeader, "C", "3"))
	r, err := DecodeRequestWire(data)
	if err != nil {
		t.Fatal(err)
	}
	r.Headers.Add("A", "1b")
	r.Headers["B"] = append(r.Headers["B"], "2b")
	want := http.Header{"A": {"1", "1b"}, "B": {"2", "2b"}, "C": {"3"}}
	if !equalHeader(r.Headers, want) {
		t.Errorf("got %v, want %v", r.Headers, want)
	}
	resp, err := DecodeResponseWire(wireMsg(respMagic, wireHeader(tagRespHeader, "A", "1"), wireHeader(tagRespHeader, "B", "2")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Headers.Add("A", "1b")
	if !equalHeader(resp.Headers, http.Header{"A": {"1", "1b"}, "B": {"2"}}) {
		t.Errorf("got %v", resp.Headers)
	}
	// Decoded bodies can be appended to without touching anything else.
	r, _ = DecodeRequestWire(AppendRequestWire(nil, &Request{Body: []byte("abc"), Method: "GET"}))
	r.Body = append(r.Body, "def"...)
	if r.Method != "GET" {
		t.Errorf("Method = %q after appending to Body", r.Method)
	}
}
