package protocol

import (
	"encoding/binary"
	"fmt"
	"net/http"
)

// The request decoder behind DecodeRequestWire and DecodeRequestWireInto,
// on every net/http Go guest's request path, where function calls and
// allocations are dear under WebAssembly: one decoder that makes few of
// either. (Raw handlers read the message in place: RequestIndex.)

// smallMessage is the size up to which a request is decoded in one pass
// with one string copy of the whole message; past it the body would be
// copied twice, so the strings get an exact-size copy instead.
const smallMessage = 16 << 10

// headerSink receives a request's header fields into a header map whose
// first value slices are carved from vals.
type headerSink struct {
	h    http.Header
	vals []string
}

// add records one header field, its name canonicalised.
func (s *headerSink) add(name, value string) {
	name = http.CanonicalHeaderKey(name)
	if s.h == nil {
		s.h = make(http.Header, 8)
	}
	if prev, ok := s.h[name]; ok {
		s.h[name] = append(prev, value)
	} else if len(s.vals) < cap(s.vals) {
		s.vals = append(s.vals, value)
		s.h[name] = s.vals[len(s.vals)-1 : len(s.vals) : len(s.vals)]
	} else {
		s.h[name] = []string{value}
	}
}

// finish puts the header map into d.
func (s *headerSink) finish(d *Request) {
	if s.h == nil {
		s.h = http.Header{}
	}
	d.Headers = s.h
}

// decodeRequest decodes the wire form of a request into r, its headers
// into s. On error r is left unchanged.
func decodeRequest(r *Request, data []byte, s *headerSink) error {
	if len(data) > smallMessage {
		return decodeRequestLarge(r, data, s)
	}
	if err := checkMagic(data, requestMagic); err != nil {
		return err
	}
	// Small messages take one pass: one string copy of the whole message
	// (a few bytes of framing included) backs every string field.
	all := string(data)
	var d Request
	for off := len(requestMagic); off < len(data); {
		tag := data[off]
		// fieldAt by hand: the Go compiler does not inline it, and under
		// WebAssembly a call per field is a good part of the decoding.
		var start, end int
		if off+1 < len(data) && data[off+1] < 0x80 {
			start = off + 2
			end = start + int(data[off+1])
			if end > len(data) {
				return fieldError(data, off)
			}
		} else {
			var ok bool
			if start, end, ok = fieldAtLong(data, off); !ok {
				return fieldError(data, off)
			}
		}
		off = end
		v := all[start:end]
		switch tag {
		case tagHeader:
			nl, k := uint64(0), 0
			if len(v) > 0 && v[0] < 0x80 {
				nl, k = uint64(v[0]), 1
			} else {
				nl, k = binary.Uvarint(data[start:end])
			}
			if k <= 0 || nl > uint64(len(v)-k) {
				return fmt.Errorf("%w: header field has a bad name length", ErrMalformed)
			}
			s.add(v[k:k+int(nl)], v[k+int(nl):])
		case tagBody:
			d.Body = copyBytes(data[start:end])
		default:
			d.setString(tag, v)
		}
	}
	s.finish(&d)
	*r = d
	return nil
}

// decodeRequestLarge is decodeRequest for a message past smallMessage,
// usually for its body: its strings get an exact-size copy that leaves the
// body out.
func decodeRequestLarge(r *Request, data []byte, s *headerSink) error {
	// The first pass validates the message and sizes its strings, so that
	// the second can give all of them one backing allocation.
	var size, nhdr int
	err := walkFields(data, requestMagic, func(tag byte, v []byte) error {
		switch tag {
		case tagHeader:
			if _, _, err := splitHeader(v); err != nil {
				return err
			}
			nhdr++
			size += len(v)
		case tagMethod, tagURI, tagPath, tagRawQuery, tagHost, tagScheme, tagProto,
			tagRemoteAddr, tagRequestID, tagTraceParent, tagFunction, tagFunctionVersion:
			size += len(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.h = make(http.Header, nhdr)
	if cap(s.vals)-len(s.vals) < nhdr {
		s.vals = make([]string, 0, nhdr)
	}
	var a arena
	a.Grow(size)
	var d Request
	_ = walkFields(data, requestMagic, func(tag byte, v []byte) error {
		switch tag {
		case tagHeader:
			name, val, _ := splitHeader(v)
			s.add(a.str(name), a.str(val))
		case tagBody:
			d.Body = copyBytes(v)
		default:
			if isStringTag(tag) {
				d.setString(tag, a.str(v))
			}
		}
		return nil
	})
	s.finish(&d)
	*r = d
	return nil
}

// isStringTag reports whether tag is one of the request's string fields.
func isStringTag(tag byte) bool {
	switch tag {
	case tagMethod, tagURI, tagPath, tagRawQuery, tagHost, tagScheme, tagProto,
		tagRemoteAddr, tagRequestID, tagTraceParent, tagFunction, tagFunctionVersion:
		return true
	}
	return false
}

// setString sets the string field tag of d to v; it ignores other tags,
// which decoders skip.
func (d *Request) setString(tag byte, v string) {
	switch tag {
	case tagMethod:
		d.Method = v
	case tagURI:
		d.URI = v
	case tagPath:
		d.Path = v
	case tagRawQuery:
		d.RawQuery = v
	case tagHost:
		d.Host = v
	case tagScheme:
		d.Scheme = v
	case tagProto:
		d.Proto = v
	case tagRemoteAddr:
		d.RemoteAddr = v
	case tagRequestID:
		d.RequestID = v
	case tagTraceParent:
		d.TraceParent = v
	case tagFunction:
		d.Function = v
	case tagFunctionVersion:
		d.FunctionVersion = v
	}
}
