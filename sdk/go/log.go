package gojinn

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"
)

// Structured logs through the gojinn_log_v1 host function. Each call
// sends one line: a level, a message and the key-value pairs as a JSON
// object. The node tags it with the function, version, request id and
// trace id, keeps the last lines per function (`gojinn-node logs`) and
// writes it to its own log. Lines over the node's rate limit (100 lines/s
// per function by default, bursts of 1000) are dropped; messages over
// 8 KiB are truncated and fields over 16 KiB dropped.
//
// LogDebug, LogInfo, LogWarn and LogError are named so because Info
// already returns the request's protocol details.
//
// Key-value pairs follow log/slog: alternating keys and values, or
// slog.Attr values.
//
//	gojinn.LogInfo("order placed", "order", id, "total", 12.5)
//	log := slog.New(gojinn.LogHandler())
//	log.Warn("slow upstream", "took", d)

// Status codes of gojinn_log_v1.log (docs/guest-protocol.md).
const (
	logOK = 0
)

// Log sends one line at level.
func Log(level slog.Level, msg string, kv ...any) {
	r := slog.NewRecord(time.Time{}, level, msg, 0) // the host stamps the time
	r.Add(kv...)
	_ = defaultLogHandler.Handle(context.Background(), r) // Handle never fails
}

// LogDebug sends a line at debug level.
func LogDebug(msg string, kv ...any) { Log(slog.LevelDebug, msg, kv...) }

// LogInfo sends a line at info level.
func LogInfo(msg string, kv ...any) { Log(slog.LevelInfo, msg, kv...) }

// LogWarn sends a line at warn level.
func LogWarn(msg string, kv ...any) { Log(slog.LevelWarn, msg, kv...) }

// LogError sends a line at error level.
func LogError(msg string, kv ...any) { Log(slog.LevelError, msg, kv...) }

var defaultLogHandler = &logHandler{}

// LogHandler returns a slog.Handler that sends every record to the node
// through gojinn_log_v1, so a guest can use log/slog:
//
//	slog.SetDefault(slog.New(gojinn.LogHandler()))
//
// Every level is enabled; the node keeps or drops lines. Attributes and
// groups become the line's JSON fields.
func LogHandler() slog.Handler { return defaultLogHandler }

// logHandler encodes records as one message and a JSON object of fields.
type logHandler struct {
	groups []string   // open groups, outermost first
	attrs  []logAttrs // attributes from WithAttrs, in order
}

// logAttrs are attributes added while depth groups were open.
type logAttrs struct {
	depth int
	attrs []slog.Attr
}

// Enabled reports true: the node decides which lines it keeps.
func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs returns a handler that adds attrs to every record.
func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], logAttrs{depth: len(h.groups), attrs: attrs})
	return &h2
}

// WithGroup returns a handler that nests later attributes under name.
func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(h.groups[:len(h.groups):len(h.groups)], name)
	return &h2
}

// Handle sends r to the node.
func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	hostLog(int32(r.Level), r.Message, h.fields(r))
	return nil
}

// fields encodes the handler's and the record's attributes as one JSON
// object, or returns nil when there are none.
func (h *logHandler) fields(r slog.Record) []byte {
	var rec []slog.Attr
	if r.NumAttrs() > 0 {
		rec = make([]slog.Attr, 0, r.NumAttrs())
		r.Attrs(func(a slog.Attr) bool {
			rec = append(rec, a)
			return true
		})
	}
	if len(h.attrs) == 0 && len(rec) == 0 {
		return nil
	}
	buf := make([]byte, 0, 128)
	buf = append(buf, '{')
	first := true
	// Attributes at depth d come before group d opens, because groups are
	// only ever appended.
	open := 0
	i := 0
	for d := 0; d <= len(h.groups); d++ {
		for ; i < len(h.attrs) && h.attrs[i].depth == d; i++ {
			for _, a := range h.attrs[i].attrs {
				buf = appendAttr(buf, a, &first)
			}
		}
		if d == len(h.groups) || (i == len(h.attrs) && len(rec) == 0) {
			break // nothing left to put in deeper groups
		}
		buf = appendKey(buf, h.groups[d], &first)
		buf = append(buf, '{')
		first = true
		open++
	}
	if open == len(h.groups) {
		for _, a := range rec {
			buf = appendAttr(buf, a, &first)
		}
	}
	for ; open > 0; open-- {
		buf = append(buf, '}')
	}
	buf = append(buf, '}')
	if len(buf) == 2 {
		return nil
	}
	return buf
}

// appendKey writes a member's key (after a comma unless it is the
// object's first).
func appendKey(buf []byte, key string, first *bool) []byte {
	if !*first {
		buf = append(buf, ',')
	}
	*first = false
	buf = appendJSONString(buf, key)
	return append(buf, ':')
}

// appendAttr writes one attribute as slog's JSON handler would: empty
// attributes and empty groups are left out, a group without a key is
// inlined.
func appendAttr(buf []byte, a slog.Attr, first *bool) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		if len(g) == 0 {
			return buf
		}
		if a.Key == "" {
			for _, ga := range g {
				buf = appendAttr(buf, ga, first)
			}
			return buf
		}
		buf = appendKey(buf, a.Key, first)
		buf = append(buf, '{')
		inner := true
		for _, ga := range g {
			buf = appendAttr(buf, ga, &inner)
		}
		return append(buf, '}')
	}
	buf = appendKey(buf, a.Key, first)
	return appendJSONValue(buf, a.Value)
}

// appendJSONValue writes v as JSON. Durations and times are strings
// ("1.5s", RFC 3339); NaN and infinities, which JSON lacks, are strings.
func appendJSONValue(buf []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(buf, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendJSONString(buf, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(buf, f, 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		return appendJSONString(buf, v.Duration().String())
	case slog.KindTime:
		return appendJSONString(buf, v.Time().Format(time.RFC3339Nano))
	}
	x := v.Any()
	if err, ok := x.(error); ok {
		return appendJSONString(buf, err.Error())
	}
	b, err := json.Marshal(x)
	if err != nil {
		return appendJSONString(buf, fmt.Sprint(x))
	}
	return append(buf, b...)
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c < 0x20:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, `\ufffd`...)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// logPanic logs a recovered handler panic as one error line: the value and
// the stack in its message (cut at 8 KiB, the top of the stack kept), so
// that a panicking function costs one line of its log rate, not one per
// line of the stack, and the whole trace stays together in
// `gojinn-node logs`.
func logPanic(v any) {
	// Straight to the host: no slog record or field encoding, so a
	// handler that never logs does not link them in.
	hostLog(int32(slog.LevelError), fmt.Sprintf("handler panic: %v\n%s", v, debug.Stack()), nil)
}
