package protocol

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The wire form is what the host and a pooled (reactor) guest exchange
// through linear memory. A message is a 4-byte magic, whose last byte is the
// protocol version, followed by fields. A field is a one-byte tag, a uvarint
// length and that many bytes. Decoders skip tags they do not know, so fields
// can be added without a new version; a change that breaks old readers gets
// a new version byte (and new ABI export names).
var (
	requestMagic  = [4]byte{'G', 'J', 'Q', Version}
	responseMagic = [4]byte{'G', 'J', 'S', Version}
)

// Request field tags.
const (
	tagMethod          = 1
	tagURI             = 2
	tagPath            = 3
	tagRawQuery        = 4
	tagHeader          = 5 // uvarint name length, name, value
	tagBody            = 6
	tagHost            = 7
	tagScheme          = 8
	tagProto           = 9
	tagRemoteAddr      = 10
	tagRequestID       = 11
	tagTraceParent     = 12
	tagFunction        = 13
	tagFunctionVersion = 14
)

// Response field tags.
const (
	tagStatus     = 1 // value is a uvarint
	tagRespHeader = 2 // uvarint name length, name, value
	tagRespBody   = 3
)

// AppendRequestWire appends the wire form of r to dst and returns the
// extended slice. Headers are written in ascending order of name, so the
// output is deterministic. It allocates only when dst must grow (or, to sort
// them, when r has more than 32 header names).
func AppendRequestWire(dst []byte, r *Request) []byte {
	dst = append(dst, requestMagic[:]...)
	dst = appendField(dst, tagMethod, r.Method)
	dst = appendField(dst, tagURI, r.URI)
	dst = appendField(dst, tagPath, r.Path)
	dst = appendField(dst, tagRawQuery, r.RawQuery)
	var scratch [32]string
	for _, name := range sortedNames(scratch[:0], r.Headers) {
		for _, v := range r.Headers[name] {
			dst = appendHeaderField(dst, tagHeader, name, v)
		}
	}
	dst = appendField(dst, tagBody, r.Body)
	dst = appendField(dst, tagHost, r.Host)
	dst = appendField(dst, tagScheme, r.Scheme)
	dst = appendField(dst, tagProto, r.Proto)
	dst = appendField(dst, tagRemoteAddr, r.RemoteAddr)
	dst = appendField(dst, tagRequestID, r.RequestID)
	dst = appendField(dst, tagTraceParent, r.TraceParent)
	dst = appendField(dst, tagFunction, r.Function)
	dst = appendField(dst, tagFunctionVersion, r.FunctionVersion)
	return dst
}

// DecodeRequestWire decodes the wire form of a request. Header names are
// canonicalised (http.CanonicalHeaderKey); values of names that differ only
// in case are merged in message order. When a field occurs more than once,
// the last one wins. The result does not alias data.
func DecodeRequestWire(data []byte) (*Request, error) {
	r := new(Request)
	if err := DecodeRequestWireInto(r, data, make([]string, 0, 8)); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeRequestWireInto is DecodeRequestWire decoding into r, whose fields
// it all overwrites. The spare capacity of vals backs the value slices of
// the first headers (one value each, capped so that appending copies), so
// a caller that keeps vals beside r saves allocations. Apart from that it
// allocates one string shared by every string field, the header map and a
// copy of a non-empty body; the result does not alias data. On error r is
// left unchanged.
func DecodeRequestWireInto(r *Request, data []byte, vals []string) error {
	sink := headerSink{vals: vals[:0]}
	return decodeRequest(r, data, &sink)
}

// AppendResponseWire appends the wire form of r to dst. Headers are written
// in ascending order of name, so the output is deterministic.
func AppendResponseWire(dst []byte, r *Response) ([]byte, error) {
	if !validStatus(r.Status) {
		return dst, fmt.Errorf("%w: %d", ErrInvalidStatus, r.Status)
	}
	if r.Headers == nil && len(r.Fields) > 0 {
		// Sorted on a copy: encoding does not reorder r.
		return AppendResponseWireFields(dst, r.Status, slices.Clone(r.Fields), r.Body)
	}
	dst = append(dst, responseMagic[:]...)
	var st [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(st[:], uint64(r.StatusOrDefault()))
	dst = appendField(dst, tagStatus, st[:n])
	var scratch [32]string
	for _, name := range sortedNames(scratch[:0], r.Headers) {
		for _, v := range r.Headers[name] {
			dst = appendHeaderField(dst, tagRespHeader, name, v)
		}
	}
	dst = appendField(dst, tagRespBody, r.Body)
	return dst, nil
}

// DecodeResponseWire decodes the wire form of a response written by a
// guest, validating status and headers. A response with more than
// MaxResponseHeaderFields header fields, or more than MaxResponseHeaderBytes
// of header names and values, is refused with an error wrapping
// ErrTooLarge. Header names are canonicalised and
// values of names that differ only in case are merged in message order. When
// the status or body occurs more than once, the last one wins. The result
// does not alias data.
func DecodeResponseWire(data []byte) (*Response, error) {
	r, err := DecodeResponseWireFields(data)
	if err != nil {
		return nil, err
	}
	r.Headers, r.Fields = r.HeaderMap(), nil
	return r, nil
}

// DecodeResponseWireFields is DecodeResponseWire with the headers in the
// result's Fields (names canonical, in message order) instead of a map;
// its Headers is nil. It validates the same way. A response makes three
// allocations, or two without headers or without a body: the Response
// with room for four fields, one copy of the header bytes that every
// header string shares, and the body.
func DecodeResponseWireFields(data []byte) (*Response, error) {
	if err := checkMagic(data, responseMagic); err != nil {
		return nil, err
	}
	if len(data) > 1<<31-1 {
		return nil, fmt.Errorf("%w: a %d-byte response is over 2 GiB", ErrMalformed, len(data))
	}
	// One pass validates and locates; the strings are made once the
	// header bytes are known to be valid.
	var spans [8]HeaderSpan
	hs := spans[:0]
	var status int
	var body Span
	hdrBytes := 0
	for off := len(responseMagic); off < len(data); {
		tag := data[off]
		start, end, ok := fieldAt(data, off)
		if !ok {
			return nil, fieldError(data, off)
		}
		off = end
		v := data[start:end]
		switch tag {
		case tagStatus:
			st, err := decodeStatus(v)
			if err != nil {
				return nil, err
			}
			status = st
		case tagRespHeader:
			name, val, err := splitHeader(v)
			if err != nil {
				return nil, err
			}
			if err := checkHeader(name, val); err != nil {
				return nil, err
			}
			// Checked as the fields come, so that what is allocated
			// before a refusal (hs) is bounded by the limits too.
			if len(hs) == MaxResponseHeaderFields {
				return nil, errTooManyHeaderFields()
			}
			if hdrBytes += len(name) + len(val); hdrBytes > MaxResponseHeaderBytes {
				return nil, errTooManyHeaderBytes()
			}
			valAt := end - len(val)
			nameAt := valAt - len(name)
			hs = append(hs, HeaderSpan{Name: Span{int32(nameAt), int32(valAt)}, Value: Span{int32(valAt), int32(end)}})
		case tagRespBody:
			body = Span{int32(start), int32(end)}
		}
	}
	ra := new(responseFieldsAlloc)
	resp := &ra.resp
	resp.Status = status
	resp.Body = copyBytes(data[body.Start:body.End])
	if len(hs) == 0 {
		return resp, nil
	}
	resp.Fields = ra.fields[:0]
	if len(hs) > len(ra.fields) {
		resp.Fields = make([]HeaderField, 0, len(hs))
	}
	var a arena
	a.Grow(hdrBytes)
	for _, h := range hs {
		resp.Fields = append(resp.Fields, HeaderField{
			Name:  http.CanonicalHeaderKey(a.str(data[h.Name.Start:h.Name.End])),
			Value: a.str(data[h.Value.Start:h.Value.End]),
		})
	}
	return resp, nil
}

// responseFieldsAlloc is a response decoded with its headers as fields,
// with room for its first four, in one allocation.
type responseFieldsAlloc struct {
	resp   Response
	fields [4]HeaderField
}

// decodeStatus decodes and validates a status field.
func decodeStatus(v []byte) (int, error) {
	s, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, fmt.Errorf("%w: status field is not a single uvarint", ErrMalformed)
	}
	if s > 599 || !validStatus(int(s)) { // 1xx included: informational only
		return 0, fmt.Errorf("%w: %d", ErrInvalidStatus, s)
	}
	return int(s), nil
}

// arena hands out strings copied from byte slices, all sharing the
// allocation made by Grow.
type arena struct{ strings.Builder }

func (a *arena) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	start := a.Len()
	a.Write(v)
	// The Builder only ever appends, so this string's bytes never change.
	return a.String()[start:]
}

func copyBytes(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

// sortedNames returns the keys of h in ascending order, using buf's
// storage when it is large enough.
func sortedNames[V any](buf []string, h map[string]V) []string {
	names := buf[:0]
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func appendField[T string | []byte](dst []byte, tag byte, v T) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func appendHeaderField(dst []byte, tag byte, name, value string) []byte {
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(uvarintLen(uint64(len(name)))+len(name)+len(value)))
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	return append(dst, value...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// splitHeader splits a header field into name and value. They alias v.
func splitHeader(v []byte) (name, value []byte, err error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)-k) {
		return nil, nil, fmt.Errorf("%w: header field has a bad name length", ErrMalformed)
	}
	return v[k : k+int(n)], v[k+int(n):], nil
}

// walkFields checks the magic, then calls fn for every field in order.
func walkFields(data []byte, magic [4]byte, fn func(tag byte, v []byte) error) error {
	if err := checkMagic(data, magic); err != nil {
		return err
	}
	for off := len(magic); off < len(data); {
		start, end, ok := fieldAt(data, off)
		if !ok {
			return fieldError(data, off)
		}
		if err := fn(data[off], data[start:end]); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// fieldAt returns the bounds of the value of the field whose tag is at
// data[off]; ok is false when its length is malformed or overruns data
// (fieldError says how). The common one-byte length takes no call to
// binary.Uvarint: the one-pass request decoder reads every field here.
func fieldAt(data []byte, off int) (start, end int, ok bool) {
	if off+1 < len(data) && data[off+1] < 0x80 { // the usual 1-byte length
		start = off + 2
		end = start + int(data[off+1])
		return start, end, end <= len(data)
	}
	return fieldAtLong(data, off)
}

// fieldAtLong is fieldAt for a length of more than one byte.
func fieldAtLong(data []byte, off int) (start, end int, ok bool) {
	n, k := binary.Uvarint(data[off+1:])
	if k <= 0 {
		return 0, 0, false
	}
	start = off + 1 + k
	if n > uint64(len(data)-start) {
		return 0, 0, false
	}
	return start, start + int(n), true
}

// fieldError describes why fieldAt refused the field at off.
func fieldError(data []byte, off int) error {
	n, k := binary.Uvarint(data[off+1:])
	if k <= 0 {
		return fmt.Errorf("%w: bad field length at offset %d", ErrMalformed, off+1)
	}
	start := off + 1 + k
	return fmt.Errorf("%w: field at offset %d claims %d bytes, %d remain", ErrMalformed, off, n, len(data)-start)
}

// checkMagic checks a message's 4-byte header against magic.
func checkMagic(data []byte, magic [4]byte) error {
	if len(data) < len(magic) {
		return fmt.Errorf("%w: %d bytes is shorter than the 4-byte header", ErrMalformed, len(data))
	}
	if data[0] != magic[0] || data[1] != magic[1] || data[2] != magic[2] {
		return fmt.Errorf("%w: bad magic %q, want %q", ErrMalformed, data[:3], string(magic[:3]))
	}
	if data[3] != magic[3] {
		return fmt.Errorf("%w: wire version %d, this decoder speaks %d", ErrUnsupportedVersion, data[3], magic[3])
	}
	return nil
}
