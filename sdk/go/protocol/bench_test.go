package protocol

import (
	"net/http"
	"testing"
)

// benchRequest is a typical small GET: no body, eight headers.
func benchRequest() *Request {
	return &Request{
		Method:   "GET",
		URI:      "/api/users/42?fields=name,email&expand=team",
		Path:     "/api/users/42",
		RawQuery: "fields=name,email&expand=team",
		Headers: http.Header{
			"Accept":            {"application/json"},
			"Accept-Encoding":   {"gzip, deflate, br"},
			"Accept-Language":   {"en-US,en;q=0.9"},
			"Authorization":     {"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"},
			"Cache-Control":     {"no-cache"},
			"User-Agent":        {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"},
			"X-Forwarded-For":   {"203.0.113.7"},
			"X-Forwarded-Proto": {"https"},
		},
		Host:            "api.example.com",
		Scheme:          "https",
		Proto:           "HTTP/2.0",
		RemoteAddr:      "203.0.113.7:51234",
		RequestID:       "01HZX3J4K5M6N7P8Q9R0STUVWX",
		TraceParent:     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Function:        "users",
		FunctionVersion: "v3",
	}
}

// benchResponse is a typical small JSON answer with eight headers.
func benchResponse() *Response {
	return &Response{
		Status: 200,
		Headers: http.Header{
			"Cache-Control":          {"private, max-age=60"},
			"Content-Length":         {"28"},
			"Content-Type":           {"application/json"},
			"Date":                   {"Wed, 26 Nov 2025 09:45:00 GMT"},
			"Etag":                   {`W/"5f3a-42"`},
			"Vary":                   {"Accept-Encoding", "Authorization"},
			"X-Content-Type-Options": {"nosniff"},
			"X-Request-Id":           {"01HZX3J4K5M6N7P8Q9R0STUVWX"},
		},
		Body: []byte(`{"id":42,"name":"Ada Byron"}`),
	}
}

func BenchmarkAppendRequestWire(b *testing.B) {
	r := benchRequest()
	buf := AppendRequestWire(nil, r)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequestWire(buf[:0], r)
	}
}

func BenchmarkDecodeRequestWire(b *testing.B) {
	data := AppendRequestWire(nil, benchRequest())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequestWire(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalRequestJSON(b *testing.B) {
	r := benchRequest()
	out, err := MarshalRequestJSON(r)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalRequestJSON(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalResponseJSON(b *testing.B) {
	data, err := MarshalResponseJSON(benchResponse())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalResponseJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResponseWire(b *testing.B) {
	data, err := AppendResponseWire(nil, benchResponse())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeResponseWire(data); err != nil {
			b.Fatal(err)
		}
	}
}
