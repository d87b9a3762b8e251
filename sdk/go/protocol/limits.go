package protocol

import "fmt"

// Limits on the headers of a response written by a guest. Without them a
// guest could answer with millions of tiny header fields ("a: b" takes six
// bytes of wire form), each of which costs the host a string, a slice
// element and a map entry: 11 MiB of wire form became more than 700 MB of
// host memory. The response decoders check both limits field by field, so
// refusing a response costs no more than accepting one at the limits.
const (
	// MaxResponseHeaderFields is the most header fields a response may
	// carry. A field is one name with one value: a name with several values
	// (Set-Cookie) counts once per value, and in the JSON form a name whose
	// list is empty or null counts once.
	MaxResponseHeaderFields = 10_000
	// MaxResponseHeaderBytes is the most bytes of header names and values a
	// response may carry, counted per field (a name with two values counts
	// twice), without the encoding's framing. It is the 1 MiB the host
	// allows for a response's status and headers beside its body.
	MaxResponseHeaderBytes = 1 << 20
)

// errTooManyHeaderFields is the error for a response with more than
// MaxResponseHeaderFields header fields.
func errTooManyHeaderFields() error {
	return fmt.Errorf("%w: response has more than %d header fields; send fewer (join the values of one name with commas where HTTP allows it, or move data into the body)",
		ErrTooLarge, MaxResponseHeaderFields)
}

// errTooManyHeaderBytes is the error for a response whose header names and
// values add up to more than MaxResponseHeaderBytes.
func errTooManyHeaderBytes() error {
	return fmt.Errorf("%w: response header names and values add up to more than %d bytes; send less in headers (move data into the body)",
		ErrTooLarge, MaxResponseHeaderBytes)
}
