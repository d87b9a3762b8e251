package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"unicode/utf8"
)

// Fuzz properties, for every decoder:
//   - it never panics;
//   - an error wraps one of the package's sentinels and comes with a nil value;
//   - a decoded value does not alias the input;
//   - re-encoding a decoded value and decoding it again gives an equal value
//     (equalRequest/equalResponse: nil and empty bodies and headers are equal;
//     a response status of 0 equals 200), and encoding is then a fixed point;
//   - the value survives the other form too, where that form can carry it.

// maxSeedBody keeps large table cases out of the seed corpus.
const maxSeedBody = 4 << 10

var legacyJSONSeeds = []string{
	`{"method":"POST","uri":"/api/users?id=7","headers":{"Content-Type":["application/json"]},"body":"{\"a\":1}"}`,
	`{"status":201,"headers":{"X":"a"},"body":"hi"}`,
	`{"headers":{"X":["a","b"]}}`,
	`{"headers":{"x-a":"3","X-A":["1","2"]}}`,
	`{"v":1,"status":200,"body":"AAH/","body_encoding":"base64"}`,
	`{"v":2,"status":"x"}`,
	`{"method":"GET","uri":"http://h/p?q=1","raw_query":"r"}`,
	`{"headers":{"X":null,"Y":[null,"a"]},"body":null}`,
	" {}\n",
	`null`,
}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrInvalidStatus) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
}

func checkCanonical(t *testing.T, h http.Header) {
	t.Helper()
	if h == nil {
		t.Fatal("decoded Headers is nil")
	}
	for name := range h {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Fatalf("header name %q is not canonical (%q)", name, c)
		}
	}
}

func checkValidResponse(t *testing.T, r *Response) {
	t.Helper()
	if !validStatus(r.Status) {
		t.Fatalf("decoded status %d", r.Status)
	}
	checkCanonical(t, r.Headers)
	for name, vals := range r.Headers {
		for _, v := range vals {
			if err := checkHeader(name, v); err != nil {
				t.Fatalf("decoded an invalid header: %v", err)
			}
		}
	}
}

func requestIsUTF8(r *Request) bool {
	for _, s := range []string{r.Method, r.URI, r.Path, r.RawQuery, r.Host, r.Scheme, r.Proto,
		r.RemoteAddr, r.RequestID, r.TraceParent, r.Function, r.FunctionVersion} {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return headerIsUTF8(r.Headers)
}

func headerIsUTF8(h http.Header) bool {
	for name, vals := range h {
		if !utf8.ValidString(name) {
			return false
		}
		for _, v := range vals {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

func FuzzUnmarshalRequestJSON(f *testing.F) {
	for _, tc := range requestCases() {
		if len(tc.req.Body) <= maxSeedBody {
			data, _ := MarshalRequestJSON(tc.req)
			f.Add(data)
		}
	}
	for _, tc := range jsonCommonErrCases {
		f.Add([]byte(tc.in))
	}
	for _, s := range legacyJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		r, err := UnmarshalRequestJSON(in)
		if err != nil {
			if r != nil {
				t.Fatal("non-nil request with an error")
			}
			checkSentinel(t, err)
			return
		}
		checkCanonical(t, r.Headers)
		before := cloneRequest(r)
		clobber(in)
		if !equalRequest(r, before) {
			t.Fatal("decoded request aliases its input")
		}

		out, err := MarshalRequestJSON(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := UnmarshalRequestJSON(out)
		if err != nil {
			t.Fatalf("decode re-encoded request: %v\n%s", err, out)
		}
		if !equalRequest(r, r2) {
			t.Fatalf("JSON round trip changed the request\nfirst  %s\nsecond %s", dumpRequest(r), dumpRequest(r2))
		}
		if out2, _ := MarshalRequestJSON(r2); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not a fixed point\n%s\n%s", out, out2)
		}

		w, err := DecodeRequestWire(AppendRequestWire(nil, r))
		if err != nil {
			t.Fatalf("decode wire form: %v", err)
		}
		if !equalRequest(r, w) {
			t.Fatalf("wire round trip changed the request\nJSON %s\nwire %s", dumpRequest(r), dumpRequest(w))
		}
	})
}

func FuzzUnmarshalResponseJSON(f *testing.F) {
	for _, tc := range responseCases() {
		if len(tc.resp.Body) <= maxSeedBody {
			data, _ := MarshalResponseJSON(tc.resp)
			f.Add(data)
		}
	}
	for _, tc := range jsonCommonErrCases {
		f.Add([]byte(tc.in))
	}
	for _, s := range legacyJSONSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"status":42}`))
	f.Add([]byte(`{"headers":{"Bad Name":"x","X":"a\r\nb"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		r, err := UnmarshalResponseJSON(in)
		if err != nil {
			if r != nil {
				t.Fatal("non-nil response with an error")
			}
			checkSentinel(t, err)
			return
		}
		checkValidResponse(t, r)
		before := cloneResponse(r)
		clobber(in)
		if !equalResponse(r, before, false) {
			t.Fatal("decoded response aliases its input")
		}

		out, err := MarshalResponseJSON(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := UnmarshalResponseJSON(out)
		if err != nil {
			t.Fatalf("decode re-encoded response: %v\n%s", err, out)
		}
		if r2.Status != r.StatusOrDefault() || !equalResponse(r, r2, true) {
			t.Fatalf("JSON round trip changed the response\nfirst  %s\nsecond %s", dumpResponse(r), dumpResponse(r2))
		}
		if out2, _ := MarshalResponseJSON(r2); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not a fixed point\n%s\n%s", out, out2)
		}

		wire, err := AppendResponseWire(nil, r)
		if err != nil {
			t.Fatalf("wire encode: %v", err)
		}
		w, err := DecodeResponseWire(wire)
		if err != nil {
			t.Fatalf("decode wire form: %v", err)
		}
		if !equalResponse(r, w, true) {
			t.Fatalf("wire round trip changed the response\nJSON %s\nwire %s", dumpResponse(r), dumpResponse(w))
		}
	})
}

func FuzzDecodeRequestWire(f *testing.F) {
	for _, tc := range requestCases() {
		if len(tc.req.Body) <= maxSeedBody {
			f.Add(AppendRequestWire(nil, tc.req))
		}
	}
	for _, tc := range wireCommonErrCases {
		f.Add(tc.in)
	}
	f.Add(wireMsg(reqMagic, wireField(0, "zero"), wireField(99, "x"), wireHeader(tagHeader, "x-a", "1"),
		wireHeader(tagHeader, "X-A", "2"), wireField(tagBody, "b"), wireField(tagBody, "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		r, err := DecodeRequestWire(in)
		// The one-pass decoder of small messages and the two-pass one of
		// large messages must agree, whatever storage the caller lends.
		var large, lent Request
		lerr := decodeRequestLarge(&large, in, &headerSink{})
		if (err == nil) != (lerr == nil) {
			t.Fatalf("small-message decoder says %v, large-message decoder %v", err, lerr)
		}
		if err2 := DecodeRequestWireInto(&lent, in, make([]string, 0, 2)); (err2 == nil) != (err == nil) {
			t.Fatalf("with lent values: %v, without: %v", err2, err)
		}
		if err != nil {
			if r != nil {
				t.Fatal("non-nil request with an error")
			}
			checkSentinel(t, err)
			x := RequestIndex{Headers: []HeaderSpan{{}}, Body: Span{1, 2}}
			x.Fields[FieldMethod] = Span{1, 2}
			if ierr := IndexRequestWire(&x, in); ierr == nil || ierr.Error() != err.Error() {
				t.Fatalf("index: %v; the decoder says %v", ierr, err)
			}
			if !x.empty() {
				t.Fatalf("index not reset after %v: %+v", err, x)
			}
			return
		}
		// The index finds the same fields as the decoders.
		var x RequestIndex
		if err := IndexRequestWire(&x, in); err != nil {
			t.Fatalf("index fails where the decoders decode: %v", err)
		}
		if ir := x.request(in); !equalRequest(r, ir) {
			t.Fatalf("index disagrees\ndecoder %s\nindex   %s", dumpRequest(r), dumpRequest(ir))
		}
		if !equalRequest(r, &large) || !equalRequest(r, &lent) {
			t.Fatalf("decoders disagree\nsmall %s\nlarge %s\nlent  %s", dumpRequest(r), dumpRequest(&large), dumpRequest(&lent))
		}
		checkCanonical(t, r.Headers)
		before := cloneRequest(r)
		clobber(in)
		if !equalRequest(r, before) {
			t.Fatal("decoded request aliases its input")
		}

		out := AppendRequestWire(nil, r)
		r2, err := DecodeRequestWire(out)
		if err != nil {
			t.Fatalf("decode re-encoded request: %v\n%q", err, out)
		}
		if !equalRequest(r, r2) {
			t.Fatalf("wire round trip changed the request\nfirst  %s\nsecond %s", dumpRequest(r), dumpRequest(r2))
		}
		if out2 := AppendRequestWire(nil, r2); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not a fixed point\n%q\n%q", out, out2)
		}

		// The JSON form carries strings as UTF-8, and its decoder derives
		// an empty path from the URI.
		if requestIsUTF8(r) && (r.Path != "" || r.URI == "") {
			js, err := MarshalRequestJSON(r)
			if err != nil {
				t.Fatalf("JSON encode: %v", err)
			}
			j, err := UnmarshalRequestJSON(js)
			if err != nil {
				t.Fatalf("decode JSON form: %v\n%s", err, js)
			}
			if !equalRequest(r, j) {
				t.Fatalf("JSON round trip changed the request\nwire %s\nJSON %s", dumpRequest(r), dumpRequest(j))
			}
		}
	})
}

func FuzzDecodeResponseWire(f *testing.F) {
	for _, tc := range responseCases() {
		if len(tc.resp.Body) <= maxSeedBody {
			data, _ := AppendResponseWire(nil, tc.resp)
			f.Add(data)
		}
	}
	for _, tc := range wireCommonErrCases {
		f.Add(withMagic(tc.in, respMagic))
	}
	f.Add(wireMsg(respMagic, wireStatus(42)))
	f.Add(wireMsg(respMagic, wireStatus(0), wireField(7, "x"), wireHeader(tagRespHeader, "set-cookie", "a"),
		wireHeader(tagRespHeader, "Set-Cookie", "b"), wireField(tagRespBody, "\xff")))
	f.Add(wireMsg(respMagic, wireField(tagStatus, "\xc8\x01\x00")))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The decoder agrees with a plain reference decoder on every
		// input, errors included.
		ref, referr := referenceDecodeResponse(data)
		fin := bytes.Clone(data)
		fr, ferr := DecodeResponseWireFields(fin)
		if fmt.Sprint(referr) != fmt.Sprint(ferr) {
			t.Fatalf("reference decoder: %v; fields decoder: %v", referr, ferr)
		}
		if ferr == nil {
			if fr.Headers != nil {
				t.Fatal("fields decoder filled Headers")
			}
			for _, f := range fr.Fields {
				if f.Name != http.CanonicalHeaderKey(f.Name) {
					t.Fatalf("field name %q is not canonical", f.Name)
				}
			}
			before := cloneResponse(fr)
			before.Fields = slices.Clone(fr.Fields)
			clobber(fin)
			if fr.Status != ref.Status || !equalResponse(&Response{Status: fr.Status, Headers: fr.HeaderMap(), Body: fr.Body}, ref, false) ||
				!slices.Equal(fr.Fields, before.Fields) || !bytes.Equal(fr.Body, before.Body) {
				t.Fatalf("fields decoder disagrees or aliases its input\nreference %s\nfields    %s %q", dumpResponse(ref), dumpResponse(fr), fr.Fields)
			}
			// Encoding the fields gives what encoding the map gives.
			fo, err1 := AppendResponseWire(nil, fr)
			mo, err2 := AppendResponseWire(nil, ref)
			if err1 != nil || err2 != nil || !bytes.Equal(fo, mo) {
				t.Fatalf("fields encode to %q (%v), the map to %q (%v)", fo, err1, mo, err2)
			}
		}
		in := bytes.Clone(data)
		r, err := DecodeResponseWire(in)
		if err != nil {
			if r != nil {
				t.Fatal("non-nil response with an error")
			}
			checkSentinel(t, err)
			return
		}
		checkValidResponse(t, r)
		before := cloneResponse(r)
		clobber(in)
		if !equalResponse(r, before, false) {
			t.Fatal("decoded response aliases its input")
		}

		out, err := AppendResponseWire(nil, r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := DecodeResponseWire(out)
		if err != nil {
			t.Fatalf("decode re-encoded response: %v\n%q", err, out)
		}
		if r2.Status != r.StatusOrDefault() || !equalResponse(r, r2, true) {
			t.Fatalf("wire round trip changed the response\nfirst  %s\nsecond %s", dumpResponse(r), dumpResponse(r2))
		}
		if out2, _ := AppendResponseWire(nil, r2); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not a fixed point\n%q\n%q", out, out2)
		}

		// Header values may hold obs-text, which the JSON form cannot carry.
		if headerIsUTF8(r.Headers) {
			js, err := MarshalResponseJSON(r)
			if err != nil {
				t.Fatalf("JSON encode: %v", err)
			}
			j, err := UnmarshalResponseJSON(js)
			if err != nil {
				t.Fatalf("decode JSON form: %v\n%s", err, js)
			}
			if !equalResponse(r, j, true) {
				t.Fatalf("JSON round trip changed the response\nwire %s\nJSON %s", dumpResponse(r), dumpResponse(j))
			}
		}
	})
}

// referenceDecodeResponse is DecodeResponseWire written plainly, field by
// field, for the fuzz test to check the decoder against.
func referenceDecodeResponse(data []byte) (*Response, error) {
	resp := &Response{Headers: http.Header{}}
	fields, hdrBytes := 0, 0
	err := walkFields(data, responseMagic, func(tag byte, v []byte) error {
		switch tag {
		case tagStatus:
			st, err := decodeStatus(v)
			if err != nil {
				return err
			}
			resp.Status = st
		case tagRespHeader:
			name, val, err := splitHeader(v)
			if err != nil {
				return err
			}
			if err := checkHeader(name, val); err != nil {
				return err
			}
			if fields++; fields > MaxResponseHeaderFields {
				return errTooManyHeaderFields()
			}
			if hdrBytes += len(name) + len(val); hdrBytes > MaxResponseHeaderBytes {
				return errTooManyHeaderBytes()
			}
			k := http.CanonicalHeaderKey(string(name))
			resp.Headers[k] = append(resp.Headers[k], string(val))
		case tagRespBody:
			resp.Body = copyBytes(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
