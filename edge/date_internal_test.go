package edge

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

func TestDateCache(t *testing.T) {
	var c dateCache
	t0 := time.Date(2026, 11, 26, 19, 30, 5, 100, time.FixedZone("CET", 3600))
	a := c.get(t0)
	if len(a) != 1 || a[0] != "Thu, 26 Nov 2026 18:30:05 GMT" {
		t.Fatalf("Date %q; want the time in GMT as RFC 9110 writes it", a)
	}
	if b := c.get(t0.Add(800 * time.Millisecond)); &b[0] != &a[0] {
		t.Error("a second Date within the same second was formatted again")
	}
	if b := c.get(t0.Add(time.Second)); b[0] != "Thu, 26 Nov 2026 18:30:06 GMT" {
		t.Errorf("one second later: %q", b)
	}
	if cap(a) != 1 {
		t.Errorf("shared value has capacity %d; an append by one response must not write into another's", cap(a))
	}
}

func TestWriteResponseDate(t *testing.T) {
	rec := httptest.NewRecorder()
	before := time.Now().Truncate(time.Second)
	WriteResponse(rec, getReq, &protocol.Response{Status: 201, Body: []byte("hi")})
	d, err := http.ParseTime(rec.Header().Get("Date"))
	if err != nil || d.Before(before) || d.After(time.Now()) {
		t.Errorf("Date %q (%v); want now", rec.Header().Get("Date"), err)
	}
	if rec.Code != 201 || rec.Header().Get("Content-Length") != "2" || rec.Body.String() != "hi" {
		t.Errorf("got %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	WriteResponse(rec, getReq, &protocol.Response{Headers: http.Header{"Date": {"Mon, 02 Jan 2006 15:04:05 GMT"}}})
	if got := rec.Header().Values("Date"); len(got) != 1 || got[0] != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Errorf("the guest's Date became %q", got)
	}
}

func TestContentLength(t *testing.T) {
	for _, n := range []int{0, 1, 14, 1023, 1024, 1 << 20} {
		v := contentLength(n)
		if len(v) != 1 || v[0] != strconv.Itoa(n) || cap(v) != 1 {
			t.Errorf("contentLength(%d) = %q (cap %d); want one value, capacity 1", n, v, cap(v))
		}
		if n < len(smallLengths) {
			if again := contentLength(n); &again[0] != &v[0] {
				t.Errorf("contentLength(%d) was made twice", n)
			}
		}
	}
	rec := httptest.NewRecorder()
	WriteResponse(rec, getReq, &protocol.Response{Headers: http.Header{"Content-Length": {"99"}}, Body: []byte("abc")})
	if got := rec.Header().Values("Content-Length"); len(got) != 1 || got[0] != "3" {
		t.Errorf("Content-Length %q; the body's length must replace what the guest set", got)
	}
}

// getReq is a GET request for the WriteResponse tests.
var getReq = httptest.NewRequest(http.MethodGet, "/", nil)
