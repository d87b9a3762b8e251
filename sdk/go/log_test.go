package gojinn

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"
)

// fieldsOf encodes what h would send for a record with args.
func fieldsOf(h slog.Handler, args ...any) string {
	r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
	r.Add(args...)
	return string(h.(*logHandler).fields(r))
}

// The fields object follows slog's conventions: pairs and Attrs, groups
// from WithGroup and slog.Group, empty groups left out, LogValuers
// resolved; values JSON can hold in readable forms.
func TestLogFields(t *testing.T) {
	h := LogHandler()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		h    slog.Handler
		args []any
		want string
	}{
		{h, nil, ""},
		{h, []any{"a", 1, "b", "x"}, `{"a":1,"b":"x"}`},
		{h, []any{"u", uint64(7), "f", 1.5, "nan", math.NaN(), "ok", false}, `{"u":7,"f":1.5,"nan":"NaN","ok":false}`},
		{h, []any{"d", 1500 * time.Millisecond, "t", when}, `{"d":"1.5s","t":"2026-01-02T03:04:05Z"}`},
		{h, []any{"err", errors.New("boom"), "m", map[string]int{"k": 1}}, `{"err":"boom","m":{"k":1}}`},
		{h, []any{"s", "q\"\\\n\t\x01\xffé<"}, `{"s":"q\"\\\n\t\u0001\ufffdé<"}`},
		{h, []any{"odd"}, `{"!BADKEY":"odd"}`},
		{h, []any{slog.Group("g", "x", 1), slog.Group("empty"), slog.Group("", "inline", 2)}, `{"g":{"x":1},"inline":2}`},
		{h.WithAttrs([]slog.Attr{slog.Int("a", 1)}).WithGroup("g"), []any{"k", "v"}, `{"a":1,"g":{"k":"v"}}`},
		{h.WithAttrs([]slog.Attr{slog.Int("a", 1)}).WithGroup("g"), nil, `{"a":1}`},
		{h.WithGroup("g").WithAttrs([]slog.Attr{slog.Int("a", 1)}).WithGroup("h"), []any{"k", 2}, `{"g":{"a":1,"h":{"k":2}}}`},
		{h.WithGroup("g"), nil, ""},
	} {
		got := fieldsOf(c.h, c.args...)
		if got != c.want {
			t.Errorf("%v: %s, want %s", c.args, got, c.want)
		}
		if got != "" && !json.Valid([]byte(got)) {
			t.Errorf("%v: invalid JSON %s", c.args, got)
		}
	}
}

// Outside a guest the helpers write to stderr and do not fail.
func TestLogOutsideAGuest(t *testing.T) {
	LogDebug("d", "k", 1)
	LogInfo("i")
	LogWarn("w")
	LogError("e", "err", errors.New("x"))
	slog.New(LogHandler()).Info("via slog", "k", "v")
}
