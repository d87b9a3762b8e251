package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// decodeJSON reads one JSON object of at most maxJSONBytes from r's body
// into v, rejecting unknown fields and trailing data. An empty body leaves v
// alone when allowEmpty, else it is an error.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) error {
	body := http.MaxBytesReader(w, r.Body, maxJSONBytes)
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			if allowEmpty {
				return nil
			}
			return apiErrorf(http.StatusBadRequest, CodeBadRequest, "the request body is empty; send a JSON object (docs/api.md shows one)")
		}
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil && errorsAsMaxBytes(err) {
			return jsonError(err)
		}
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "the request body has data after the JSON object; send exactly one object")
	}
	if raw[0] != '{' {
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "the request body must be a JSON object, not %s", jsonValueKind(raw[0]))
	}
	if err := repeatedKey(raw); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonValueKind names the JSON value that starts with b.
func jsonValueKind(b byte) string {
	switch b {
	case '[':
		return "a JSON array"
	case '"':
		return "a JSON string"
	case 'n':
		return "JSON null"
	case 't', 'f':
		return "a JSON boolean"
	}
	return "a JSON number"
}

// repeatedKey refuses an object, at any depth, that names a key twice:
// encoding/json keeps the last value silently, so {"env":{"A":"x","A":"y"}}
// would deploy A=y without a word. raw is valid JSON.
func repeatedKey(raw []byte) error {
	type frame struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF; raw was decoded once already
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].expectKey {
			if key, ok := tok.(string); ok {
				if stack[n-1].keys[key] {
					return apiErrorf(http.StatusBadRequest, CodeBadRequest, "the key %q appears twice in one JSON object of the request body; give each key once", key)
				}
				stack[n-1].keys[key] = true
				stack[n-1].expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: its object, if any, expects a key next.
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].expectKey = true
		}
	}
}

// jsonError turns a decoding error into a 400 (or 413) that names the
// problem.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errorsAsMaxBytes(err):
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			"the JSON body is larger than %d bytes; module bytes go to PUT /v1/blobs/{sha256}, not into JSON", maxJSONBytes)
	case errors.As(err, &syn):
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: the body ends inside the object")
	case errors.As(err, &typ):
		// DeployRequest embeds storage.Spec; clients never see that name.
		field := strings.TrimPrefix(typ.Field, "Spec.")
		// Value is "number 42" for numbers: keep the kind only, so a
		// mistyped env value is not echoed.
		kind, _, _ := strings.Cut(typ.Value, " ")
		if field == "" {
			return apiErrorf(http.StatusBadRequest, CodeBadRequest, "the request body must be a JSON object, not a JSON %s", kind)
		}
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "field %s: want %s, got a JSON %s", field, jsonKind(typ.Type), kind)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for DisallowUnknownFields; its
		// message is stable and names the field.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return apiErrorf(http.StatusBadRequest, CodeUnknownField, "unknown field %s in the request body; check its spelling (docs/api.md lists the fields)", field)
	default:
		return apiErrorf(http.StatusBadRequest, CodeBadRequest, "invalid request body: %v", err)
	}
}

// jsonKind names the JSON value a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		// The range too: a number out of it (1e30, 2^63) is refused with
		// this message as well.
		bits := t.Bits()
		return fmt.Sprintf("whole number from %d to %d", -(int64(1) << (bits - 1)), int64(uint64(1)<<(bits-1)-1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("whole number from 0 to %d", uint64(1)<<(t.Bits()-1)*2-1)
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}
