package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// jsonHeaders is the "headers" object of a JSON response: the values of
// every name as written. It replaces a map[string]json.RawMessage, whose
// decoding would make an entry for every name of the message before any
// could be counted: this one counts the header fields member by member
// and stops at MaxResponseHeaderFields.
type jsonHeaders struct {
	m      map[string]jsonHeaderValues
	fields int   // header fields so far, over every "headers" key of the message
	err    error // why the headers were refused; nil when they were not
}

// jsonHeaderValues are the values of one member of "headers", or why they
// could not be decoded. The error waits until the member is known to be
// kept: a later member of the same name replaces it.
type jsonHeaderValues struct {
	vals []string
	err  error
}

// UnmarshalJSON implements json.Unmarshaler. It reports no error: encoding/json
// stops decoding at an Unmarshaler's error, and UnmarshalResponseJSON must
// still see a "v" that follows (an unsupported version wins over every other
// error). It keeps the first failure in h.err instead.
func (h *jsonHeaders) UnmarshalJSON(data []byte) error {
	if h.err == nil {
		h.err = h.decode(data)
	}
	return nil
}

// decode adds the members of the object data to h.m as encoding/json would
// decode it into a map (null sets the map to nil; a later member of the same
// name replaces an earlier one), counting the header fields as it goes.
func (h *jsonHeaders) decode(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return errors.New("headers has no value")
	}
	switch data[0] {
	case 'n':
		h.m = nil
		return nil
	case '{':
	default:
		return fmt.Errorf("headers is %s, want an object of names and values", jsonKind(data[0]))
	}
	if h.m == nil {
		h.m = make(map[string]jsonHeaderValues)
	}
	return jsonMembers(data, func(key, val []byte) error {
		n := jsonElements(val)
		if h.fields += max(1, n); h.fields > MaxResponseHeaderFields {
			return errTooManyHeaderFields()
		}
		name, err := jsonKey(key)
		if err != nil {
			return err
		}
		vals, err := headerValues(val, n)
		h.m[name] = jsonHeaderValues{vals, err}
		return nil
	})
}

// The functions below walk JSON that encoding/json has validated (it checks
// a whole message before it calls an Unmarshaler). They still check every
// index, and report errJSONShape rather than panic should the input be bad.

var errJSONShape = errors.New("headers is not a well-formed JSON object")

// jsonMembers calls fn with the key (quoted, as written) and the value
// (without surrounding white space) of every member of the object data, in
// order.
func jsonMembers(data []byte, fn func(key, val []byte) error) error {
	i := skipJSONSpace(data, 1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for i < len(data) && data[i] == '"' {
		ke := scanJSONString(data, i)
		key := data[i:ke]
		i = skipJSONSpace(data, ke)
		if i >= len(data) || data[i] != ':' {
			return errJSONShape
		}
		i = skipJSONSpace(data, i+1)
		if i >= len(data) {
			return errJSONShape
		}
		ve := scanJSONValue(data, i)
		if err := fn(key, data[i:ve]); err != nil {
			return err
		}
		i = skipJSONSpace(data, ve)
		if i >= len(data) {
			return errJSONShape
		}
		switch data[i] {
		case '}':
			return nil
		case ',':
			i = skipJSONSpace(data, i+1)
		default:
			return errJSONShape
		}
	}
	return errJSONShape
}

// jsonElements returns the number of elements of the array val, or 1 when
// val is not an array.
func jsonElements(val []byte) int {
	if len(val) == 0 || val[0] != '[' {
		return 1
	}
	n := 0
	for i := skipJSONSpace(val, 1); i < len(val) && val[i] != ']'; {
		e := scanJSONValue(val, i)
		if e == i {
			break
		}
		n++
		i = skipJSONSpace(val, e)
		if i < len(val) && val[i] == ',' {
			i = skipJSONSpace(val, i+1)
		}
	}
	return n
}

// jsonKey decodes a member's key as encoding/json does.
func jsonKey(key []byte) (string, error) {
	if s, ok := plainJSONString(key); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(key, &s); err != nil {
		return "", err
	}
	return s, nil
}

// plainJSONString returns the string tok when it is a quoted string that
// needs no decoding: no escapes, ASCII only (encoding/json replaces
// invalid UTF-8). Most header names and values are; the rest go through
// encoding/json, which allocates several times more.
func plainJSONString(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return "", false
	}
	raw := tok[1 : len(tok)-1]
	for _, c := range raw {
		if c == '\\' || c == '"' || c < ' ' || c >= utf8.RuneSelf {
			return "", false
		}
	}
	return string(raw), true
}

// headerValues decodes the value of a member of "headers": a string or a
// list of strings. n is jsonElements(raw).
func headerValues(raw []byte, n int) ([]string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		if s, ok := plainJSONString(raw); ok {
			return []string{s}, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	if vals, ok := plainJSONList(raw, n); ok {
		return vals, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("want a string or a list of strings: %w", err)
	}
	return list, nil
}

// plainJSONList decodes raw when it is a non-empty list of n plain
// strings (plainJSONString).
func plainJSONList(raw []byte, n int) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' || n == 0 {
		return nil, false
	}
	vals := make([]string, 0, n)
	for i := skipJSONSpace(raw, 1); i < len(raw) && raw[i] != ']'; {
		e := scanJSONValue(raw, i)
		s, ok := plainJSONString(raw[i:e])
		if !ok {
			return nil, false
		}
		vals = append(vals, s)
		i = skipJSONSpace(raw, e)
		if i < len(raw) && raw[i] == ',' {
			i = skipJSONSpace(raw, i+1)
		}
	}
	return vals, len(vals) == n
}

// scanJSONValue returns the end of the value that starts at data[i].
func scanJSONValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return scanJSONString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = scanJSONString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(data)
	}
	for i < len(data) { // a number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}

// scanJSONString returns the end of the string whose quote is at data[i].
func scanJSONString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

func skipJSONSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// jsonKind names the kind of the JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}
