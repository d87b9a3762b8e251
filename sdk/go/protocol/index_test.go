package protocol

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
)

// request builds the Request that x describes in data, as the decoders
// would (header names canonical, in a map).
func (x *RequestIndex) request(data []byte) *Request {
	str := func(s Span) string { return string(data[s.Start:s.End]) }
	r := &Request{Body: copyBytes(data[x.Body.Start:x.Body.End])}
	for f := range x.Fields {
		if f != tagHeader && f != tagBody {
			r.setString(byte(f), str(x.Fields[f]))
		}
	}
	r.Headers = http.Header{}
	for _, h := range x.Headers {
		r.Headers.Add(str(h.Name), str(h.Value))
	}
	return r
}

// empty reports whether x holds nothing, as after a reset.
func (x *RequestIndex) empty() bool {
	return x.Fields == [len(x.Fields)]Span{} && len(x.Headers) == 0 && x.Body == Span{}
}

// TestIndexRequestWire indexes every request case and checks each field
// against the case; an index reused for a smaller request keeps nothing of
// the larger one.
func TestIndexRequestWire(t *testing.T) {
	var x RequestIndex
	for _, tc := range requestCases() {
		data := AppendRequestWire(nil, tc.req)
		if err := IndexRequestWire(&x, data); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := x.request(data); !equalRequest(got, tc.req) {
			t.Errorf("%s: index gives\n%s\nwant\n%s", tc.name, dumpRequest(got), dumpRequest(tc.req))
		}
	}
	full := &Request{Method: "POST", URI: "/a?b=c", Path: "/a", RawQuery: "b=c", Host: "h", Body: []byte("body"),
		Headers: http.Header{"X-A": {"1", "2"}}}
	if err := IndexRequestWire(&x, AppendRequestWire(nil, full)); err != nil || len(x.Headers) != 2 {
		t.Fatalf("%v, %d headers", err, len(x.Headers))
	}
	small := AppendRequestWire(nil, &Request{Method: "GET"})
	if err := IndexRequestWire(&x, small); err != nil {
		t.Fatal(err)
	}
	if got := x.request(small); !equalRequest(got, &Request{Method: "GET", Headers: http.Header{}}) {
		t.Errorf("reused index keeps the previous request: %s", dumpRequest(got))
	}
}

// TestIndexRequestWireErrors: the index refuses what the decoder refuses,
// with the same message, and is left empty.
func TestIndexRequestWireErrors(t *testing.T) {
	for _, tc := range wireCommonErrCases {
		_, want := DecodeRequestWire(tc.in)
		var x RequestIndex
		x.Fields[FieldPath] = Span{0, 1}
		err := IndexRequestWire(&x, tc.in)
		if want == nil || err == nil || err.Error() != want.Error() {
			t.Errorf("%s: index says %v, decoder %v", tc.name, err, want)
		}
		if !x.empty() {
			t.Errorf("%s: index not reset: %+v", tc.name, x)
		}
	}
	good := AppendRequestWire(nil, &Request{Method: "GET", URI: "/"})
	for name, in := range map[string][]byte{
		"version":         []byte("GJQ\x09"),
		"name overruns":   wireMsg(reqMagic, wireField(tagHeader, "\x09ab")),
		"bad name length": wireMsg(reqMagic, []byte{tagHeader, 2, 9, 'x'}),
		"bad varint":      append(bytes.Clone(good), tagURI, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"large truncated": append(bytes.Clone(good), append([]byte{tagBody, 0xff, 0xff, 0x10}, make([]byte, smallMessage)...)...),
	} {
		_, want := DecodeRequestWire(in)
		x := RequestIndex{Headers: []HeaderSpan{{}}}
		err := IndexRequestWire(&x, in)
		if want == nil || err == nil || err.Error() != want.Error() || (!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion)) {
			t.Errorf("%s: index says %v, decoder %v", name, err, want)
		}
		if !x.empty() {
			t.Errorf("%s: index not reset: %+v", name, x)
		}
	}
}
