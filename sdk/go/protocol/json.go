package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"unicode/utf8"
)

// BodyEncodingBase64 is the body_encoding value that marks a base64 body.
// Bodies that are valid UTF-8 travel as plain JSON strings, everything else
// as base64, so the JSON form is binary-safe.
const BodyEncodingBase64 = "base64"

// jsonRequest is the JSON form of a Request. Its first four fields are the
// envelope of Gojinn v1 guests ({method, uri, headers, body}), so those
// guests decode it unmodified.
type jsonRequest struct {
	V               int                 `json:"v"`
	Method          string              `json:"method"`
	URI             string              `json:"uri"`
	Headers         map[string][]string `json:"headers"`
	Body            string              `json:"body"`
	BodyEncoding    string              `json:"body_encoding,omitempty"`
	Path            string              `json:"path"`
	RawQuery        string              `json:"raw_query"`
	Query           map[string][]string `json:"query"`
	Host            string              `json:"host"`
	Scheme          string              `json:"scheme"`
	Proto           string              `json:"proto"`
	RemoteAddr      string              `json:"remote_addr"`
	RequestID       string              `json:"request_id"`
	TraceParent     string              `json:"traceparent,omitempty"`
	Function        string              `json:"function"`
	FunctionVersion string              `json:"function_version"`
}

// jsonResponse is the JSON form of a Response as guests write it. Headers
// are decoded by hand because both "k": "v" and "k": ["v1", "v2"] are
// accepted, and because their number is limited (jsonHeaders).
type jsonResponse struct {
	V            int         `json:"v"`
	Status       int         `json:"status"`
	Headers      jsonHeaders `json:"headers"`
	Body         string      `json:"body"`
	BodyEncoding string      `json:"body_encoding"`
}

// MarshalRequestJSON encodes r in the JSON form of protocol v1.
func MarshalRequestJSON(r *Request) ([]byte, error) {
	j := jsonRequest{
		V:               Version,
		Method:          r.Method,
		URI:             r.URI,
		Headers:         nonNilHeader(r.Headers),
		Path:            r.Path,
		RawQuery:        r.RawQuery,
		Query:           parseQuery(r.RawQuery),
		Host:            r.Host,
		Scheme:          r.Scheme,
		Proto:           r.Proto,
		RemoteAddr:      r.RemoteAddr,
		RequestID:       r.RequestID,
		TraceParent:     r.TraceParent,
		Function:        r.Function,
		FunctionVersion: r.FunctionVersion,
	}
	j.Body, j.BodyEncoding = encodeBody(r.Body)
	b, err := json.Marshal(&j)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode request: %w", err)
	}
	return b, nil
}

// UnmarshalRequestJSON decodes the JSON form of a request. A missing "v" is
// read as version 1. Header names are canonicalised
// (http.CanonicalHeaderKey); values of names that differ only in case are
// merged in ascending order of the names as written. When "path" is absent
// or empty, as in a Gojinn v1 envelope, the path (and, when "raw_query" is
// absent or empty too, the raw query) is derived from "uri".
func UnmarshalRequestJSON(data []byte) (*Request, error) {
	if err := checkObject(data); err != nil {
		return nil, fmt.Errorf("%w: request JSON: %v", ErrMalformed, err)
	}
	var j jsonRequest
	if err := json.Unmarshal(data, &j); err != nil {
		if j.V != 0 && j.V != Version {
			// A newer version may well change the shape of the fields.
			return nil, fmt.Errorf("%w: request is version %d, this decoder speaks %d", ErrUnsupportedVersion, j.V, Version)
		}
		return nil, fmt.Errorf("%w: request JSON: %v", ErrMalformed, err)
	}
	if j.V != 0 && j.V != Version {
		return nil, fmt.Errorf("%w: request is version %d, this decoder speaks %d", ErrUnsupportedVersion, j.V, Version)
	}
	body, err := decodeBody(j.Body, j.BodyEncoding)
	if err != nil {
		return nil, fmt.Errorf("%w: request body: %v", ErrMalformed, err)
	}
	r := &Request{
		Method:          j.Method,
		URI:             j.URI,
		Path:            j.Path,
		RawQuery:        j.RawQuery,
		Headers:         canonicalHeader(j.Headers),
		Body:            body,
		Host:            j.Host,
		Scheme:          j.Scheme,
		Proto:           j.Proto,
		RemoteAddr:      j.RemoteAddr,
		RequestID:       j.RequestID,
		TraceParent:     j.TraceParent,
		Function:        j.Function,
		FunctionVersion: j.FunctionVersion,
	}
	// A v1 envelope carries only the URI: derive path and query from it.
	if r.Path == "" && r.URI != "" {
		if u, err := url.ParseRequestURI(r.URI); err == nil {
			r.Path = u.Path
			if r.RawQuery == "" {
				r.RawQuery = u.RawQuery
			}
		}
	}
	return r, nil
}

// canonicalHeader returns h with canonical names, never nil. It returns h
// itself when its names are canonical already.
func canonicalHeader(h map[string][]string) http.Header {
	if h == nil {
		return http.Header{}
	}
	canonical := true
	for name := range h {
		if http.CanonicalHeaderKey(name) != name {
			canonical = false
			break
		}
	}
	if canonical {
		return h
	}
	out := make(http.Header, len(h))
	for _, name := range sortedNames(nil, h) {
		key := http.CanonicalHeaderKey(name)
		out[key] = append(out[key], h[name]...)
	}
	return out
}

// checkObject reports an error unless data, once white space is skipped,
// starts with a JSON object. json.Unmarshal accepts null into a struct,
// which would make "null" a valid empty message.
func checkObject(data []byte) error {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return errors.New("no JSON value")
	}
	if data[0] != '{' {
		return errors.New("not a JSON object")
	}
	return nil
}

// MarshalResponseJSON encodes r in the JSON form of protocol v1, with every
// header as a list of values.
func MarshalResponseJSON(r *Response) ([]byte, error) {
	if !validStatus(r.Status) {
		return nil, fmt.Errorf("%w: %d", ErrInvalidStatus, r.Status)
	}
	out := struct {
		V            int                 `json:"v"`
		Status       int                 `json:"status"`
		Headers      map[string][]string `json:"headers"`
		Body         string              `json:"body"`
		BodyEncoding string              `json:"body_encoding,omitempty"`
	}{V: Version, Status: r.StatusOrDefault(), Headers: nonNilHeader(r.HeaderMap())}
	out.Body, out.BodyEncoding = encodeBody(r.Body)
	b, err := json.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode response: %w", err)
	}
	return b, nil
}

// UnmarshalResponseJSON decodes a response written by a guest: protocol v1
// or the Gojinn v1 envelope {status, headers, body}. Header values may be a
// string or a list of strings. Header names are canonicalised; values of
// names that differ only in case are merged in ascending order of the names
// as written. Leading and trailing white space is allowed; anything else
// around the object is an error. A response with more than
// MaxResponseHeaderFields header fields, or more than MaxResponseHeaderBytes
// of header names and values, is refused with an error wrapping
// ErrTooLarge.
func UnmarshalResponseJSON(data []byte) (*Response, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: response is empty (the guest wrote nothing to stdout)", ErrMalformed)
	}
	if err := checkObject(data); err != nil {
		return nil, fmt.Errorf("%w: response JSON: %v", ErrMalformed, err)
	}
	var j jsonResponse
	if err := json.Unmarshal(data, &j); err != nil {
		if j.V != 0 && j.V != Version {
			// A newer version may well change the shape of the fields.
			return nil, fmt.Errorf("%w: response is version %d, this decoder speaks %d", ErrUnsupportedVersion, j.V, Version)
		}
		return nil, fmt.Errorf("%w: response JSON: %v", ErrMalformed, err)
	}
	if j.V != 0 && j.V != Version {
		return nil, fmt.Errorf("%w: response is version %d, this decoder speaks %d", ErrUnsupportedVersion, j.V, Version)
	}
	if err := j.Headers.err; err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: response JSON: %v", ErrMalformed, err)
	}
	if !validStatus(j.Status) {
		return nil, fmt.Errorf("%w: %d", ErrInvalidStatus, j.Status)
	}
	body, err := decodeBody(j.Body, j.BodyEncoding)
	if err != nil {
		return nil, fmt.Errorf("%w: response body: %v", ErrMalformed, err)
	}
	resp := &Response{Status: j.Status, Body: body, Headers: make(http.Header, len(j.Headers.m))}
	hdrBytes := 0
	// Sorted, so that names differing only in case merge in a fixed order.
	for _, name := range sortedNames(nil, j.Headers.m) {
		hv := j.Headers.m[name]
		if hv.err != nil {
			return nil, fmt.Errorf("%w: response header %q: %v", ErrMalformed, name, hv.err)
		}
		for _, v := range hv.vals {
			if err := addHeader(resp.Headers, name, v); err != nil {
				return nil, err
			}
			if hdrBytes += len(name) + len(v); hdrBytes > MaxResponseHeaderBytes {
				return nil, errTooManyHeaderBytes()
			}
		}
	}
	return resp, nil
}

func encodeBody(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), BodyEncodingBase64
}

func decodeBody(s, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		if s == "" {
			return nil, nil
		}
		return []byte(s), nil
	case BodyEncodingBase64:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, err
		}
		return b, nil
	default:
		return nil, fmt.Errorf("unknown body_encoding %q (use %q or leave it out)", encoding, BodyEncodingBase64)
	}
}

func nonNilHeader(h http.Header) map[string][]string {
	if h == nil {
		return map[string][]string{}
	}
	return h
}

func parseQuery(raw string) map[string][]string {
	q, _ := url.ParseQuery(raw) // keeps the pairs that parse; RawQuery has the exact text
	if q == nil {
		return map[string][]string{}
	}
	return q
}
