package protocol

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// HeaderField is one header line: a name and one of its values. Guests that
// do not want a header map (the Go SDK's raw handlers) exchange headers as
// a list of fields.
type HeaderField struct {
	Name, Value string
}

// DecodeRequestWireFields decodes the wire form of a request into r like
// DecodeRequestWireInto, except that the headers are appended to hdr (names
// canonicalised, in message order) instead of going into a map, and
// r.Body aliases data instead of being copied. Every string of the result
// shares one allocation, the only one it makes when hdr has room. It
// returns the extended hdr; r.Headers is left nil. On error r is left
// unchanged and hdr is returned as it came.
func DecodeRequestWireFields(r *Request, hdr []HeaderField, data []byte) ([]HeaderField, error) {
	if len(data) > smallMessage {
		return decodeRequestWireFieldsLarge(r, hdr, data)
	}
	if err := checkMagic(data, requestMagic); err != nil {
		return hdr, err
	}
	// One pass, one string copy of the whole message (a few bytes of
	// framing, and the body, included) backing every string field. Under
	// WebAssembly function calls are dear, so the loop makes few.
	all := string(data)
	var d Request
	n0 := len(hdr)
	for off := len(requestMagic); off < len(data); {
		tag := data[off]
		n, k := uint64(0), 0
		if off+1 < len(data) && data[off+1] < 0x80 { // the usual 1-byte length
			n, k = uint64(data[off+1]), 1
		} else {
			n, k = binary.Uvarint(data[off+1:])
		}
		if k <= 0 {
			return hdr[:n0], fmt.Errorf("%w: bad field length at offset %d", ErrMalformed, off+1)
		}
		start := off + 1 + k
		if n > uint64(len(data)-start) {
			return hdr[:n0], fmt.Errorf("%w: field at offset %d claims %d bytes, %d remain", ErrMalformed, off, n, len(data)-start)
		}
		end := start + int(n)
		off = end
		v := all[start:end]
		switch tag {
		case tagMethod:
			d.Method = v
		case tagURI:
			d.URI = v
		case tagPath:
			d.Path = v
		case tagRawQuery:
			d.RawQuery = v
		case tagHeader:
			nl, k := uint64(0), 0
			if len(v) > 0 && v[0] < 0x80 {
				nl, k = uint64(v[0]), 1
			} else {
				nl, k = binary.Uvarint(data[start:end])
			}
			if k <= 0 || nl > uint64(len(v)-k) {
				return hdr[:n0], fmt.Errorf("%w: header field has a bad name length", ErrMalformed)
			}
			hdr = append(hdr, HeaderField{Name: http.CanonicalHeaderKey(v[k : k+int(nl)]), Value: v[k+int(nl):]})
		case tagBody:
			d.Body = data[start:end]
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
	*r = d
	return hdr, nil
}

// decodeRequestWireFieldsLarge is DecodeRequestWireFields for a message
// past smallMessage, usually for its body: its strings get an exact-size
// copy that leaves the body out.
func decodeRequestWireFieldsLarge(r *Request, hdr []HeaderField, data []byte) ([]HeaderField, error) {
	// The first pass validates the message and sizes its strings, so that
	// the second can give all of them one backing allocation.
	var size int
	err := walkFields(data, requestMagic, func(tag byte, v []byte) error {
		switch tag {
		case tagHeader:
			if _, _, err := splitHeader(v); err != nil {
				return err
			}
			size += len(v)
		case tagMethod, tagURI, tagPath, tagRawQuery, tagHost, tagScheme, tagProto,
			tagRemoteAddr, tagRequestID, tagTraceParent, tagFunction, tagFunctionVersion:
			size += len(v)
		}
		return nil
	})
	if err != nil {
		return hdr, err
	}
	var a arena
	a.Grow(size)
	var d Request
	_ = walkFields(data, requestMagic, func(tag byte, v []byte) error {
		switch tag {
		case tagMethod:
			d.Method = a.str(v)
		case tagURI:
			d.URI = a.str(v)
		case tagPath:
			d.Path = a.str(v)
		case tagRawQuery:
			d.RawQuery = a.str(v)
		case tagHeader:
			name, val, _ := splitHeader(v)
			hdr = append(hdr, HeaderField{Name: http.CanonicalHeaderKey(a.str(name)), Value: a.str(val)})
		case tagBody:
			d.Body = v
		case tagHost:
			d.Host = a.str(v)
		case tagScheme:
			d.Scheme = a.str(v)
		case tagProto:
			d.Proto = a.str(v)
		case tagRemoteAddr:
			d.RemoteAddr = a.str(v)
		case tagRequestID:
			d.RequestID = a.str(v)
		case tagTraceParent:
			d.TraceParent = a.str(v)
		case tagFunction:
			d.Function = a.str(v)
		case tagFunctionVersion:
			d.FunctionVersion = a.str(v)
		}
		return nil
	})
	*r = d
	return hdr, nil
}

// AppendResponseWireFields appends the wire form of a response to dst: the
// status (0 means 200), the header fields and the body. Like
// AppendResponseWire it writes the headers in ascending order of name; it
// sorts hdr in place to do so, keeping the order of the values of one name.
func AppendResponseWireFields(dst []byte, status int, hdr []HeaderField, body []byte) ([]byte, error) {
	if !validStatus(status) {
		return dst, fmt.Errorf("%w: %d", ErrInvalidStatus, status)
	}
	if status == 0 {
		status = http.StatusOK
	}
	sortFields(hdr)
	dst = append(dst, responseMagic[:]...)
	var st [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(st[:], uint64(status))
	dst = appendField(dst, tagStatus, st[:n])
	for _, f := range hdr {
		dst = appendHeaderField(dst, tagRespHeader, f.Name, f.Value)
	}
	dst = appendField(dst, tagRespBody, body)
	return dst, nil
}

// sortFields sorts hdr by name, keeping the order of the values of one
// name. A response has few header lines: an insertion sort needs no
// allocation and no indirect calls.
func sortFields(hdr []HeaderField) {
	if len(hdr) > 32 {
		slices.SortStableFunc(hdr, func(a, b HeaderField) int { return strings.Compare(a.Name, b.Name) })
		return
	}
	for i := 1; i < len(hdr); i++ {
		for j := i; j > 0 && hdr[j].Name < hdr[j-1].Name; j-- {
			hdr[j], hdr[j-1] = hdr[j-1], hdr[j]
		}
	}
}
