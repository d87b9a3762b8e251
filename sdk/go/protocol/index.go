package protocol

import (
	"encoding/binary"
	"fmt"
)

// Field names a string field of a request's wire form, by its tag.
type Field uint8

// The string fields of a request (docs/guest-protocol.md, "Wire form").
const (
	FieldMethod          Field = tagMethod
	FieldURI             Field = tagURI
	FieldPath            Field = tagPath
	FieldRawQuery        Field = tagRawQuery
	FieldHost            Field = tagHost
	FieldScheme          Field = tagScheme
	FieldProto           Field = tagProto
	FieldRemoteAddr      Field = tagRemoteAddr
	FieldRequestID       Field = tagRequestID
	FieldTraceParent     Field = tagTraceParent
	FieldFunction        Field = tagFunction
	FieldFunctionVersion Field = tagFunctionVersion
)

// Span is where a value lies in a message: data[Start:End]. The zero Span
// is an empty value.
type Span struct{ Start, End int32 }

// HeaderSpan is where one header field's name and value lie in a message.
type HeaderSpan struct{ Name, Value Span }

// RequestIndex records where the fields of a request's wire form lie,
// without copying or converting any of them: a reader that needs a few
// fields (the Go SDK's raw handlers) makes strings of those alone. Under
// WebAssembly, decoding every field of every request into strings costs a
// Go guest more than most small handlers do.
type RequestIndex struct {
	// Fields holds the span of each string field, indexed by Field; an
	// absent field's span is empty. When a field occurs more than once,
	// the last one wins, as with DecodeRequestWire.
	Fields [FieldFunctionVersion + 1]Span
	// Headers holds the header fields in message order, names as the
	// message has them.
	Headers []HeaderSpan
	// Body is the body's span.
	Body Span
}

// IndexRequestWire indexes the wire form of a request into x, reusing
// x.Headers' storage. It checks what DecodeRequestWire checks (magic,
// framing, header name lengths) and fails with the same errors; on error x
// is left reset. Messages are limited to 2 GiB.
func IndexRequestWire(x *RequestIndex, data []byte) error {
	x.Reset()
	if err := checkMagic(data, requestMagic); err != nil {
		return err
	}
	if len(data) > 1<<31-1 {
		return fmt.Errorf("%w: a %d-byte message is over the 2 GiB an index holds", ErrMalformed, len(data))
	}
	if err := x.index(data); err != nil {
		x.Reset()
		return err
	}
	return nil
}

// Reset empties x, keeping the storage of its Headers.
func (x *RequestIndex) Reset() {
	x.Fields = [len(x.Fields)]Span{}
	x.Headers = x.Headers[:0]
	x.Body = Span{}
}

// index records the fields after the magic.
func (x *RequestIndex) index(data []byte) error {
	for off := len(requestMagic); off < len(data); {
		tag := data[off]
		// fieldAt by hand, as in decodeRequest: a call per field is a good
		// part of the work under WebAssembly.
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
		switch {
		case tag == tagHeader:
			nl, k := uint64(0), 0
			if start < end && data[start] < 0x80 {
				nl, k = uint64(data[start]), 1
			} else {
				nl, k = binary.Uvarint(data[start:end])
			}
			if k <= 0 || nl > uint64(end-start-k) {
				return fmt.Errorf("%w: header field has a bad name length", ErrMalformed)
			}
			nameEnd := start + k + int(nl)
			x.Headers = append(x.Headers, HeaderSpan{
				Name:  Span{int32(start + k), int32(nameEnd)},
				Value: Span{int32(nameEnd), int32(end)},
			})
		case tag == tagBody:
			x.Body = Span{int32(start), int32(end)}
		case tag < byte(len(x.Fields)):
			x.Fields[tag] = Span{int32(start), int32(end)}
		}
	}
	return nil
}
