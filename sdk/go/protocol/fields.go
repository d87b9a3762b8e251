package protocol

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// HeaderField is one header line: a name and one of its values. Code that
// does not want a header map (the Go SDK's raw handlers, the node's edge)
// exchanges headers as a list of fields.
type HeaderField struct {
	Name, Value string
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
