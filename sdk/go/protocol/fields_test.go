package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// fieldsHeader merges header fields into a header map, in order.
func fieldsHeader(hdr []HeaderField) http.Header {
	h := http.Header{}
	for _, f := range hdr {
		h.Add(f.Name, f.Value) // canonicalises, as the map decoder does
	}
	return h
}

func TestDecodeRequestWireHeaderFields(t *testing.T) {
	small := &Request{Method: "POST", URI: "/a?x=1", Path: "/a", RawQuery: "x=1", Body: []byte("hi"),
		Host: "h", Scheme: "https", Proto: "HTTP/2.0", RemoteAddr: "192.0.2.1:1", RequestID: "r",
		TraceParent: "00-1-2-01", Function: "f", FunctionVersion: "3"}
	large := *small
	large.Body = bytes.Repeat([]byte("b"), smallMessage+1)
	for name, req := range map[string]*Request{"small": small, "large": &large} {
		t.Run(name, func(t *testing.T) {
			// Names as a guest's or a foreign host's encoder might write
			// them: not canonical, repeated, differing only in case.
			wire := AppendRequestWire(nil, req)
			wire = append(wire, wireHeader(tagHeader, "x-b", "1")...)
			wire = append(wire, wireHeader(tagHeader, "X-A", "2")...)
			wire = append(wire, wireHeader(tagHeader, "x-b", "3")...)
			lent := make([]HeaderField, 1, 8)
			lent[0] = HeaderField{"Lent", "kept"}
			var got Request
			hdr, err := DecodeRequestWireFields(&got, lent, wire)
			if err != nil {
				t.Fatal(err)
			}
			// Names stay as the message has them.
			want := []HeaderField{{"Lent", "kept"}, {"x-b", "1"}, {"X-A", "2"}, {"x-b", "3"}}
			if len(hdr) != len(want) {
				t.Fatalf("fields %v, want %v", hdr, want)
			}
			for i := range want {
				if hdr[i] != want[i] {
					t.Errorf("field %d: %v, want %v", i, hdr[i], want[i])
				}
			}
			if &hdr[0] != &lent[0] {
				t.Error("the lent slice's room was not used")
			}
			if got.Headers != nil {
				t.Errorf("Headers = %v, want nil", got.Headers)
			}
			wantReq := *req
			if !equalRequest(&got, &wantReq) {
				t.Errorf("decoded %s\nwant    %s", dumpRequest(&got), dumpRequest(&wantReq))
			}
			// Strings are copies; the body aliases the message.
			method := got.Method
			clobber(wire)
			if got.Method != method || method != req.Method {
				t.Errorf("method %q changed with the message", got.Method)
			}
			if len(got.Body) > 0 && got.Body[0] == req.Body[0] {
				t.Error("body does not alias the message")
			}
		})
	}
}

func TestDecodeRequestWireFieldsErrors(t *testing.T) {
	good := AppendRequestWire(nil, &Request{Method: "GET", URI: "/"})
	for name, in := range map[string][]byte{
		"empty":           nil,
		"bad magic":       []byte("GJS\x01"),
		"version":         []byte("GJQ\x09"),
		"truncated":       good[:len(good)-1],
		"bad name length": wireMsg(reqMagic, []byte{tagHeader, 2, 9, 'x'}),
		"bad varint":      append(bytes.Clone(good), tagURI, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"large truncated": append(bytes.Clone(good), append([]byte{tagBody, 0xff, 0xff, 0x10}, make([]byte, smallMessage)...)...),
	} {
		t.Run(name, func(t *testing.T) {
			r := Request{Method: "KEEP"}
			lent := []HeaderField{{"Lent", "1"}}
			hdr, err := DecodeRequestWireFields(&r, lent, in)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Errorf("error %v wraps no sentinel", err)
			}
			if r.Method != "KEEP" || len(hdr) != 1 || hdr[0].Name != "Lent" {
				t.Errorf("request %q / fields %v changed on error", r.Method, hdr)
			}
		})
	}
}

func TestAppendResponseWireFields(t *testing.T) {
	// The same response as a header map and as fields, given in an order
	// the encoder must sort (keeping X-Multi's values in order).
	hdr := []HeaderField{{"X-Multi", "2"}, {"Content-Type", "text/plain"}, {"X-Multi", "1"}, {"Cache-Control", "no-store"}}
	viaMap, err := AppendResponseWire(nil, &Response{Status: 201, Headers: http.Header{
		"Content-Type": {"text/plain"}, "X-Multi": {"2", "1"}, "Cache-Control": {"no-store"}}, Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendResponseWireFields([]byte("prefix"), 201, hdr, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("prefix"), viaMap...)) {
		t.Errorf("fields encoding\n%q\nmap encoding\n%q", got, viaMap)
	}
	resp, err := DecodeResponseWire(got[len("prefix"):])
	if err != nil || resp.Status != 201 || strings.Join(resp.Headers["X-Multi"], ",") != "2,1" {
		t.Errorf("decoded %+v, %v", resp, err)
	}

	// Many headers take the library sort; it must be stable too.
	var many []HeaderField
	for i := range 40 {
		many = append(many, HeaderField{string(rune('Z' - i%26)), fmt.Sprintf("%02d", i)})
	}
	out, err := AppendResponseWireFields(nil, 0, many, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = DecodeResponseWire(out)
	if err != nil || resp.Status != 200 {
		t.Fatalf("decoded %+v, %v", resp, err)
	}
	for i := 1; i < len(many); i++ {
		if many[i].Name < many[i-1].Name || (many[i].Name == many[i-1].Name && many[i].Value < many[i-1].Value) {
			t.Fatalf("fields not stably sorted at %d: %v", i, many)
		}
	}

	if _, err := AppendResponseWireFields(nil, 42, nil, nil); !errors.Is(err, ErrInvalidStatus) {
		t.Errorf("status 42: %v, want ErrInvalidStatus", err)
	}
}
