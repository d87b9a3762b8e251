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
// DecodeRequestWireInto, except that the headers are appended to hdr (in
// message order, names as the message has them: a Gojinn host sends them
// canonical, but canonicalising every name of every request costs a Go
// guest more than the few lookups most handlers make, which can ignore
// case) instead of going into a map, and
// r.Body aliases data instead of being copied. Every string of the result
// shares one allocation, the only one it makes when hdr has room. It
// returns the extended hdr; r.Headers is left nil. On error r is left
// unchanged and hdr is returned as it came.
func DecodeRequestWireFields(r *Request, hdr []HeaderField, data []byte) ([]HeaderField, error) {
	sink := headerSink{fields: hdr, toFields: true}
	if err := decodeRequest(r, data, &sink); err != nil {
		return hdr, err
	}
	return sink.fields, nil
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
