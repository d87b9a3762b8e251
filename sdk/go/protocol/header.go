package protocol

import (
	"fmt"
	"net/http"
)

// addHeader validates one response header from a guest and adds it under
// its canonical name. Names must be RFC 9110 tokens; values must not hold
// control characters other than HTAB: CR and LF would let a guest split
// the response, and the others make clients refuse it (an HTTP/3 or
// HTTP/1.1 client fails the request; Go's HTTP/2 server drops the field).
func addHeader(h http.Header, name, value string) error {
	if err := checkHeader(name, value); err != nil {
		return err
	}
	key := http.CanonicalHeaderKey(name)
	h[key] = append(h[key], value)
	return nil
}

// checkHeader reports whether name and value may be sent as a response
// header; see addHeader.
func checkHeader[T string | []byte](name, value T) error {
	if !validHeaderName(name) {
		return fmt.Errorf("%w: header name %q is not a valid HTTP token", ErrMalformed, name)
	}
	if !validHeaderValue(value) {
		return fmt.Errorf("%w: value of header %q contains a control character (only HTAB is allowed: RFC 9110 section 5.5)", ErrMalformed, name)
	}
	return nil
}

func validHeaderName[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func validHeaderValue[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
