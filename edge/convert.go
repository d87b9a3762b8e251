package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// Invoker runs a function; *runtime.Engine satisfies it.
type Invoker interface {
	Invoke(ctx context.Context, function string, req *protocol.Request) (*runtime.Result, error)
}

// ToRequest reads r (its body capped at maxBody bytes) into a protocol
// request with a fresh request id.
func ToRequest(r *http.Request, maxBody int64) (*protocol.Request, error) {
	var body []byte
	if r.ContentLength != 0 {
		// A server request with ContentLength 0 has no body; not reading
		// it spares HTTP/3 a trip through its frame parser per request.
		var err error
		if body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody)); err != nil {
			return nil, err
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &protocol.Request{
		Method:      r.Method,
		URI:         r.RequestURI,
		Path:        r.URL.Path,
		RawQuery:    r.URL.RawQuery,
		Headers:     r.Header,
		Body:        body,
		Host:        r.Host,
		Scheme:      scheme,
		Proto:       r.Proto,
		RemoteAddr:  r.RemoteAddr,
		RequestID:   newRequestID(),
		TraceParent: r.Header.Get("Traceparent"),
	}, nil
}

// WriteResponse writes a guest's response to w.
func WriteResponse(w http.ResponseWriter, resp *protocol.Response) {
	h := w.Header()
	for name, vals := range resp.Headers {
		h[name] = vals
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusOrDefault())
	_, _ = w.Write(resp.Body)
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
