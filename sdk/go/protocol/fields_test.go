package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The index keeps header names as the message has them (raw handlers match
// names without regard to case), in message order, and uses the storage
// lent in Headers.
func TestIndexRequestWireHeaderNames(t *testing.T) {
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
			x := RequestIndex{Headers: make([]HeaderSpan, 0, 8)}
			lent := &x.Headers[:1][0]
			if err := IndexRequestWire(&x, wire); err != nil {
				t.Fatal(err)
			}
			str := func(s Span) string { return string(wire[s.Start:s.End]) }
			var got []string
			for _, h := range x.Headers {
				got = append(got, str(h.Name)+"="+str(h.Value))
			}
			if want := []string{"x-b=1", "X-A=2", "x-b=3"}; !slices.Equal(got, want) {
				t.Errorf("headers %q, want %q", got, want)
			}
			if &x.Headers[0] != lent {
				t.Error("the lent storage was not used")
			}
			if str(x.Fields[FieldMethod]) != "POST" || str(x.Body) != string(req.Body) {
				t.Errorf("method %q, body of %d bytes", str(x.Fields[FieldMethod]), x.Body.End-x.Body.Start)
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
