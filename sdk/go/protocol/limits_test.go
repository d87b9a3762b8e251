package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// headerLimitCase is a response's headers at or just over a limit.
type headerLimitCase struct {
	name   string
	fields []HeaderField
	ok     bool
}

// headerLimitCases are built around MaxResponseHeaderFields and
// MaxResponseHeaderBytes: exactly at a limit passes, one over fails.
func headerLimitCases() []headerLimitCase {
	cookies := func(n int) []HeaderField { // many Set-Cookie lines, as a real response may have
		hs := make([]HeaderField, n)
		for i := range hs {
			hs[i] = HeaderField{"Set-Cookie", fmt.Sprintf("c%05d=%s; Path=/; HttpOnly", i, strings.Repeat("v", 50))}
		}
		return hs
	}
	// 16 fields of 64 KiB each (name and value): 1 MiB in all.
	chunks := func() []HeaderField {
		hs := make([]HeaderField, 16)
		for i := range hs {
			name := fmt.Sprintf("X-Chunk-%02d", i)
			hs[i] = HeaderField{name, strings.Repeat("x", 64<<10-len(name))}
		}
		return hs
	}
	return []headerLimitCase{
		{"fields at the limit", cookies(MaxResponseHeaderFields), true},
		{"one field over", cookies(MaxResponseHeaderFields + 1), false},
		{"bytes at the limit", chunks(), true},
		{"one byte over", append(chunks(), HeaderField{"A", ""}), false},
		{"one value at the byte limit", []HeaderField{{"X", strings.Repeat("v", MaxResponseHeaderBytes-1)}}, true},
		{"one value a byte over", []HeaderField{{"X", strings.Repeat("v", MaxResponseHeaderBytes)}}, false},
	}
}

func checkLimitError(t *testing.T, err error, ok bool) {
	t.Helper()
	if ok {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want an error wrapping ErrTooLarge", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, strconv.Itoa(MaxResponseHeaderFields)) && !strings.Contains(msg, strconv.Itoa(MaxResponseHeaderBytes)) {
		t.Fatalf("error %q does not state the limit", msg)
	}
}

func TestResponseWireHeaderLimits(t *testing.T) {
	for _, tc := range headerLimitCases() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := AppendResponseWireFields(nil, 200, tc.fields, []byte("body"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := DecodeResponseWireFields(data)
			checkLimitError(t, err, tc.ok)
			if tc.ok && len(r.Fields) != len(tc.fields) {
				t.Fatalf("decoded %d fields, want %d", len(r.Fields), len(tc.fields))
			}
			if !tc.ok && r != nil {
				t.Fatal("a response with the error")
			}
			m, err := DecodeResponseWire(data)
			checkLimitError(t, err, tc.ok)
			if tc.ok && len(m.Headers) == 0 {
				t.Fatal("no headers")
			}
		})
	}
}

func TestResponseJSONHeaderLimits(t *testing.T) {
	for _, tc := range headerLimitCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Every value in a list under its name, as MarshalResponseJSON
			// writes them.
			r, err := UnmarshalResponseJSON(jsonWithFields(tc.fields))
			checkLimitError(t, err, tc.ok)
			if tc.ok {
				n := 0
				for _, vs := range r.Headers {
					n += len(vs)
				}
				if n != len(tc.fields) {
					t.Fatalf("decoded %d fields, want %d", n, len(tc.fields))
				}
			}
			// Every value a member of its own, each name distinct.
			var b bytes.Buffer
			b.WriteString(`{"headers":{`)
			seen := map[string]bool{}
			for i, f := range tc.fields {
				if i > 0 {
					b.WriteByte(',')
				}
				name := f.Name
				if seen[name] {
					name = fmt.Sprintf("%s-%d", name, i)
				}
				seen[name] = true
				k, _ := json.Marshal(name)
				v, _ := json.Marshal(f.Value)
				b.Write(k)
				b.WriteByte(':')
				b.Write(v)
			}
			b.WriteString(`}}`)
			_, err = UnmarshalResponseJSON(b.Bytes())
			checkLimitError(t, err, tc.ok)
		})
	}
}

// jsonWithFields is a JSON response with fields as headers, every value of a
// name in one list.
func jsonWithFields(fields []HeaderField) []byte {
	byName := map[string][]string{}
	for _, f := range fields {
		byName[f.Name] = append(byName[f.Name], f.Value)
	}
	out, err := json.Marshal(map[string]any{"status": 200, "headers": byName, "body": "body"})
	if err != nil {
		panic(err)
	}
	return out
}

// Fields are counted over every "headers" key of a message, and an empty
// list counts as a field, so neither gets round the limit.
func TestResponseJSONHeaderFieldsCountedAcrossKeys(t *testing.T) {
	half := func(prefix string, n int, val string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%s-%d":%s`, prefix, i, val)
		}
		b.WriteString("}")
		return b.String()
	}
	const n = MaxResponseHeaderFields / 2
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"two keys at the limit", `{"headers":` + half("A", n, `"v"`) + `,"Headers":` + half("B", n, `"v"`) + `}`, true},
		{"two keys one over", `{"headers":` + half("A", n, `"v"`) + `,"Headers":` + half("B", n+1, `"v"`) + `}`, false},
		{"empty lists one over", `{"headers":` + half("A", MaxResponseHeaderFields+1, `[]`) + `}`, false},
		{"nulls one over", `{"headers":` + half("A", MaxResponseHeaderFields+1, `null`) + `}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalResponseJSON([]byte(tc.in))
			checkLimitError(t, err, tc.ok)
		})
	}
	// A version this decoder does not speak still wins, even after the
	// headers.
	in := `{"headers":` + half("A", MaxResponseHeaderFields+1, `"v"`) + `,"v":2}`
	if _, err := UnmarshalResponseJSON([]byte(in)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v, want ErrUnsupportedVersion", err)
	}
}

// allocated returns the bytes the process allocated while fn ran.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A response of millions of tiny headers is refused before it costs the
// host more than a fraction of its own size: 11 MiB of "a: b" fields
// allocated about 280 MB in the wire decoder, and its map 433 MB more.
func TestOversizedHeadersAllocateLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 11 MiB messages")
	}
	const n = 2_300_000
	wire := append([]byte(nil), responseMagic[:]...)
	for range n {
		wire = appendHeaderField(wire, tagRespHeader, "a", "b")
	}
	var b bytes.Buffer
	b.WriteString(`{"headers":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"a%d":"b"`, i)
	}
	b.WriteString(`}}`)
	js := b.Bytes()
	list := []byte(`{"headers":{"a":[` + strings.Repeat(`"b",`, n) + `"b"]}}`)

	const most = 8 << 20 // what the fields up to the limit take
	for _, tc := range []struct {
		name   string
		in     []byte
		decode func([]byte) error
		most   uint64
	}{
		{"wire fields", wire, func(d []byte) error { _, err := DecodeResponseWireFields(d); return err }, most},
		{"wire map", wire, func(d []byte) error { _, err := DecodeResponseWire(d); return err }, most},
		{"JSON members", js, func(d []byte) error { _, err := UnmarshalResponseJSON(d); return err }, most},
		{"JSON list", list, func(d []byte) error { _, err := UnmarshalResponseJSON(d); return err }, most},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			got := allocated(func() { err = tc.decode(tc.in) })
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			t.Logf("allocated %d bytes", got)
			if got > tc.most {
				t.Fatalf("refusing a %d-byte response allocated %d bytes, want at most %d", len(tc.in), got, tc.most)
			}
		})
	}
}
