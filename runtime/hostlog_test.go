package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/guestlog"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

const (
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testTraceParent = "00-" + testTraceID + "-00f067aa0ba902b7-01"
)

func logGuest(t testing.TB, command bool) []byte {
	return runtimetest.BuildGo(t, "runtime/testdata/guests/log", !command)
}

// logEngine starts an engine whose guest logs go to a guestlog.Buffer.
func logEngine(t testing.TB, mod ...func(*runtime.Config)) (*runtime.Engine, *guestlog.Buffer) {
	buf := guestlog.New(guestlog.Config{})
	e := newEngine(t, append([]func(*runtime.Config){func(c *runtime.Config) { c.Logs = buf }}, mod...)...)
	return e, buf
}

// traced is a GET of target carrying the test traceparent.
func traced(target string) *protocol.Request {
	r := get(target)
	r.TraceParent = testTraceParent
	return r
}

// logLine is what tests compare of a record.
type logLine struct {
	level  slog.Level
	source runtime.LogSource
	msg    string
	fields string
	trunc  bool
}

func lines(recs []runtime.LogRecord) []logLine {
	out := make([]logLine, len(recs))
	for i, r := range recs {
		out[i] = logLine{r.Level, r.Source, r.Message, string(r.Fields), r.Truncated}
	}
	return out
}

func checkLines(t *testing.T, what string, recs []runtime.LogRecord, want []logLine) {
	t.Helper()
	got := lines(recs)
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d:\n%+v", what, len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: record %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// The ABI from WAT: levels clamp, fields are kept, refused or dropped
// with a note, a long message is cut at 8 KiB; the statuses say so and
// every record carries the function, version, request and trace ids.
func TestLogABI(t *testing.T) {
	e, buf := logEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "wat", Version: "7", Module: wat(t, "log"), Mode: runtime.ModePooled})
	res, err := invoke(t, f, traced("/"))
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int8
	for _, b := range res.Response.Body {
		statuses = append(statuses, int8(b))
	}
	if want := []int8{0, 0, -1, -1, 0, 0, 1, -2}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	recs := buf.Recent("wat", guestlog.Filter{})
	notObject := `{"fields_error":"the fields must be a JSON object; they were dropped"}`
	huge := strings.Repeat("\x00", runtime.MaxLogMessage)
	checkLines(t, "wat", recs, []logLine{
		{slog.LevelDebug, runtime.LogSourceGuest, "debug line", `{"k":1}`, false},
		{slog.LevelInfo, runtime.LogSourceGuest, "info", "", false},
		{slog.LevelWarn, runtime.LogSourceGuest, "warn", notObject, false},
		{slog.LevelError, runtime.LogSourceGuest, "error", string(recs[3].Fields), false},
		{slog.LevelError, runtime.LogSourceGuest, "high", "", false},
		{slog.LevelDebug, runtime.LogSourceGuest, "low", "", false},
		{slog.LevelWarn, runtime.LogSourceGuest, huge, "", true},
		{slog.LevelInfo, runtime.LogSourceGuest, "info", `{"fields_error":"the fields are 20000 bytes, more than the limit of 16384; they were dropped"}`, true},
	})
	if !strings.Contains(string(recs[3].Fields), "not valid JSON") {
		t.Errorf("invalid JSON note: %s", recs[3].Fields)
	}
	for _, r := range recs {
		if r.Function != "wat" || r.Version != "7" || r.RequestID != "req-1" || r.TraceID != testTraceID || r.Time.IsZero() {
			t.Fatalf("record ids: %+v", r)
		}
	}
	if st := f.Stats(); st.LogLines != 8 || st.LogsDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Bytes that are not UTF-8 in a guest's message, fields or output lines
// become U+FFFD,
// so the node's JSON log and the logs API stay valid UTF-8 (a guest
// logging a raw byte from a request must not make its own lines, or the
// lines around them, unparsable), and the fields stay valid JSON.
func TestLogInvalidUTF8(t *testing.T) {
	e, buf := logEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "utf8", Version: "1", Module: wat(t, "log_utf8"), Mode: runtime.ModePooled})
	res, err := invoke(t, f, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Response.Body) != "\x00" {
		t.Fatalf("status %v, want 0 (the line is kept)", res.Response.Body)
	}
	recs := buf.Recent("utf8", guestlog.Filter{})
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	if out := recs[1]; out.Source != runtime.LogSourceStdout || out.Message != "out \uFFFD" {
		t.Errorf("stdout line %q from %s, want %q from stdout", out.Message, out.Source, "out \uFFFD")
	}
	r := recs[0]
	if want := "bad \uFFFD name"; r.Message != want {
		t.Errorf("message %q, want %q", r.Message, want)
	}
	if want := "{\"user\":\"a\uFFFDb\",\"ok\":\"\u00e9\"}"; string(r.Fields) != want {
		t.Errorf("fields %q, want %q", r.Fields, want)
	}
	if !utf8.Valid(r.Fields) || !json.Valid(r.Fields) {
		t.Errorf("fields are not valid UTF-8 JSON: %q", r.Fields)
	}
}

// The SDK's helpers and slog handler, in every mode.
func TestLogSDK(t *testing.T) {
	e, buf := logEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			name := "sdk-" + mc.name
			f := load(t, e, runtime.FunctionSpec{Name: name, Module: logGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset})
			mustInvoke(t, f, traced("/levels"))
			mustInvoke(t, f, traced("/slog"))
			mustInvoke(t, f, get("/slog")) // no traceparent: no trace id
			recs := buf.Recent(name, guestlog.Filter{})
			checkLines(t, name, recs, []logLine{
				{slog.LevelDebug, runtime.LogSourceGuest, "debug line", `{"n":1}`, false},
				{slog.LevelInfo, runtime.LogSourceGuest, "info line", `{"s":"x\"y","ok":true}`, false},
				{slog.LevelWarn, runtime.LogSourceGuest, "warn line", `{"d":"1.5s"}`, false},
				{slog.LevelError, runtime.LogSourceGuest, "error line", `{"err":"boom"}`, false},
				{slog.LevelWarn, runtime.LogSourceGuest, "between info and warn", "", false},
				{slog.LevelInfo, runtime.LogSourceGuest, "from slog", `{"a":1,"g":{"k":"v","sub":{"x":2}}}`, false},
				{slog.LevelInfo, runtime.LogSourceGuest, "from slog", `{"a":1,"g":{"k":"v","sub":{"x":2}}}`, false},
			})
			if got := buf.Recent(name, guestlog.Filter{TraceID: testTraceID}); len(got) != 6 {
				t.Fatalf("%d records of the trace, want 6", len(got))
			}
			if recs[6].TraceID != "" || recs[6].RequestID != "req-1" {
				t.Fatalf("untraced request: %+v", recs[6])
			}
		})
	}
}

// What a guest writes to stdout and stderr becomes one record per line
// (stdout at info, stderr at warn; blank lines skipped), and Result keeps
// the raw output. A command's stdout is its response: only stderr counts.
func TestLogCapturesOutput(t *testing.T) {
	e, buf := logEngine(t)
	stderr := []logLine{
		{slog.LevelWarn, runtime.LogSourceStderr, "err one", "", false},
		{slog.LevelWarn, runtime.LogSourceStderr, "err two", "", false},
	}
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			name := "out-" + mc.name
			f := load(t, e, runtime.FunctionSpec{Name: name, Module: logGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset})
			target := "/print?stdout=1"
			want := append([]logLine{
				{slog.LevelInfo, runtime.LogSourceStdout, "out one", "", false},
				{slog.LevelInfo, runtime.LogSourceStdout, "out two", "", false},
			}, stderr...)
			if mc.cmd {
				target, want = "/print", stderr
			}
			res, err := invoke(t, f, traced(target))
			if err != nil {
				t.Fatal(err)
			}
			recs := buf.Recent(name, guestlog.Filter{})
			checkLines(t, name, recs, want)
			for _, r := range recs {
				if r.TraceID != testTraceID || r.RequestID != "req-1" {
					t.Fatalf("ids: %+v", r)
				}
			}
			if string(res.Stderr) != "err one\nerr two" || (!mc.cmd && string(res.Stdout) != "out one\nout two\r\n\n") {
				t.Fatalf("Result.Stdout %q, Result.Stderr %q", res.Stdout, res.Stderr)
			}
		})
	}
}

// A failed invocation's stderr is logged too, and still in InvokeError;
// lines the guest logged before failing are kept.
func TestLogFailedInvocation(t *testing.T) {
	e, buf := logEngine(t)
	for _, mc := range []modeCase{allModes[0], allModes[2]} {
		name := "fail-" + mc.name
		f := load(t, e, runtime.FunctionSpec{Name: name, Module: logGuest(t, mc.cmd), Mode: mc.mode})
		_, err := invoke(t, f, traced("/panic"))
		var ie *runtime.InvokeError
		if !errors.As(err, &ie) || !errors.Is(err, runtime.ErrExit) || !strings.Contains(string(ie.Stderr), "about to exit") {
			t.Fatalf("%s: %v (stderr %q)", mc.name, err, ie.Stderr)
		}
		checkLines(t, name, buf.Recent(name, guestlog.Filter{}), []logLine{
			{slog.LevelInfo, runtime.LogSourceGuest, "before the panic", "", false},
			{slog.LevelWarn, runtime.LogSourceStderr, "about to exit", "", false},
		})
	}
}

// Messages are cut at 8 KiB on a UTF-8 boundary, and output cut at
// MaxStderr marks its last line truncated.
func TestLogCaps(t *testing.T) {
	e, buf := logEngine(t)
	f := load(t, e, runtime.FunctionSpec{Name: "caps", Module: logGuest(t, false), Mode: runtime.ModePooled, Limits: runtime.Limits{MaxStderr: 10}})
	mustInvoke(t, f, get("/huge"))
	mustInvoke(t, f, get("/print"))
	recs := buf.Recent("caps", guestlog.Filter{})
	if len(recs) != 3 {
		t.Fatalf("%d records: %+v", len(recs), lines(recs))
	}
	if m := recs[0].Message; len(m) != runtime.MaxLogMessage || !utf8.ValidString(m) || !recs[0].Truncated {
		t.Fatalf("huge message: %d bytes, valid UTF-8 %v, truncated %v", len(m), utf8.ValidString(m), recs[0].Truncated)
	}
	checkLines(t, "stderr", recs[1:], []logLine{
		{slog.LevelWarn, runtime.LogSourceStderr, "err one", "", false},
		{slog.LevelWarn, runtime.LogSourceStderr, "er", "", true},
	})
}

// Bad pointers trap that invocation with a message naming the argument;
// the function serves the next request. Fields that are not an object are
// statuses, not traps.
func TestLogPointerAbuse(t *testing.T) {
	e, buf := logEngine(t)
	traps := map[string]string{
		"message": "message (16 bytes at 0xffffff00) is outside linear memory",
		"fields":  "fields (8 bytes at 0xffffff00) is outside linear memory",
		"wrap":    "message (32 bytes at 0xfffffff0) is outside linear memory",
	}
	codes := map[string]string{"huge-fields": "-2", "not-object": "-1", "bad-json": "-1", "object": "0", "level-high": "0", "level-low": "0"}
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			name := "abuse-" + mc.name
			f := load(t, e, runtime.FunctionSpec{Name: name, Module: logGuest(t, mc.cmd), Mode: mc.mode, Reset: mc.reset})
			for what, want := range traps {
				_, err := invoke(t, f, get("/abuse/"+what))
				if !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "gojinn_log_v1.log: "+want) {
					t.Fatalf("%s: %v, want a trap saying %q", what, err, want)
				}
				if st, body := mustInvoke(t, f, get("/abuse/object")); st != 200 || body != "0" {
					t.Fatalf("after the %s trap: %d %q", what, st, body)
				}
			}
			for what, want := range codes {
				if st, body := mustInvoke(t, f, get("/abuse/"+what)); st != 200 || body != want {
					t.Fatalf("%s: %d %q, want status %s", what, st, body, want)
				}
			}
			// The last two records are level-high and level-low (map order
			// aside, codes run after traps); check both clamped.
			levels := map[slog.Level]int{}
			for _, r := range buf.Recent(name, guestlog.Filter{}) {
				if r.Message != "hi" {
					t.Fatalf("message %q", r.Message)
				}
				levels[r.Level]++
			}
			if levels[slog.LevelError] != 1 || levels[slog.LevelDebug] != 1 {
				t.Fatalf("records by level %v, want one error (level 1000) and one debug (level -1000)", levels)
			}
		})
	}
}

// The rate limit: a burst, then nothing (the refill is negligible here);
// the guest sees -3 and Stats counts what was dropped. A negative rate is
// no limit.
func TestLogRateLimit(t *testing.T) {
	e, buf := logEngine(t, func(c *runtime.Config) { c.LogRate, c.LogBurst = 0.001, 5 })
	f := load(t, e, runtime.FunctionSpec{Name: "limited", Module: logGuest(t, false), Mode: runtime.ModePooled})
	mustInvoke(t, f, get("/many?n=20"))
	mustInvoke(t, f, get("/print"))
	if n := len(buf.Recent("limited", guestlog.Filter{})); n != 5 {
		t.Fatalf("%d lines kept, want the burst of 5", n)
	}
	if st := f.Stats(); st.LogLines != 5 || st.LogsDropped != 17 {
		t.Fatalf("stats: %d lines, %d dropped; want 5 and 17", st.LogLines, st.LogsDropped)
	}
	if st, body := mustInvoke(t, f, get("/abuse/object")); st != 200 || body != "-3" {
		t.Fatalf("over the limit: %d %q, want -3", st, body)
	}

	// Output cut at its capture limit while over the rate limit still
	// says it was cut: one record marked truncated closes the burst.
	e, buf = logEngine(t, func(c *runtime.Config) { c.LogRate, c.LogBurst = 0.001, 3 })
	f = load(t, e, runtime.FunctionSpec{Name: "flood", Module: logGuest(t, false), Mode: runtime.ModePooled})
	mustInvoke(t, f, get("/flood?n=200&size=1000"))
	recs := buf.Recent("flood", guestlog.Filter{})
	if len(recs) != 4 || recs[2].Truncated || !recs[3].Truncated || !strings.Contains(recs[3].Message, "output truncated") {
		t.Fatalf("a cut output over the rate limit: %d records, the last %+v; want the burst of 3 and a truncation record", len(recs), recs[len(recs)-1])
	}

	e, buf = logEngine(t, func(c *runtime.Config) { c.LogRate, c.LogBurst = -1, 1 })
	f = load(t, e, runtime.FunctionSpec{Name: "unlimited", Module: logGuest(t, false), Mode: runtime.ModePooled})
	mustInvoke(t, f, get("/many?n=50"))
	if st := f.Stats(); st.LogLines != 50 || st.LogsDropped != 0 || len(buf.Recent("unlimited", guestlog.Filter{})) != 50 {
		t.Fatalf("no limit: %+v", st)
	}

	cfg := runtime.DefaultConfig()
	cfg.LogBurst = -1
	if _, err := runtime.NewEngine(context.Background(), cfg); !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), "LogBurst") {
		t.Fatalf("negative burst: %v", err)
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Without Config.Logs, records go to Config.Logger at their level with
// the same attributes.
func TestLogWithoutSink(t *testing.T) {
	var out syncBuffer
	e := newEngine(t, func(c *runtime.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f := load(t, e, runtime.FunctionSpec{Name: "nosink", Version: "2", Module: logGuest(t, false), Mode: runtime.ModePooled})
	mustInvoke(t, f, traced("/levels"))
	var found bool
	for _, line := range strings.Split(out.b.String(), "\n") {
		if !strings.Contains(line, `"msg":"info line"`) {
			continue
		}
		found = true
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]any{"level": "INFO", "function": "nosink", "version": "2", "request_id": "req-1", "trace_id": testTraceID, "source": "guest"} {
			if m[k] != v {
				t.Errorf("%s = %v, want %v in %s", k, m[k], v, line)
			}
		}
		if fields, _ := m["fields"].(map[string]any); fields["s"] != `x"y` {
			t.Errorf("fields %v", m["fields"])
		}
	}
	if !found {
		t.Fatalf("no guest line in the engine's log:\n%s", out.b.String())
	}
}

// Imports from gojinn_log_v1 must be log with its signature.
func TestLogImportChecks(t *testing.T) {
	e := newEngine(t)
	for name, want := range map[string]string{
		"log-import-unknown": "gojinn_log_v1.flush, which this node does not provide (it has log)",
		"log-import-badsig":  "gojinn_log_v1.log has the wrong signature [i32 i32] -> [i32]",
	} {
		_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "imp", Module: wat(t, name)})
		if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// TraceID accepts only a well-formed traceparent with a non-zero id.
func TestTraceID(t *testing.T) {
	for tp, want := range map[string]string{
		testTraceParent: testTraceID,
		"":              "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01": "",
		"garbage": "",
	} {
		if got := runtime.TraceID(tp); got != want {
			t.Errorf("TraceID(%q) = %q, want %q", tp, got, want)
		}
	}
}

// A Go handler's panic is one error line in the function's log, the stack
// in its message, not a warn line per line of the stack on stderr: a
// panicking function costs one line of its log rate per request.
func TestGoPanicIsOneLogLine(t *testing.T) {
	e, buf := logEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mc.abuse(t), Mode: mc.mode, Reset: mc.reset})
			if st, _ := mustInvoke(t, f, get("/panic")); st != 500 {
				t.Fatalf("panic: status %d, want 500", st)
			}
			recs := buf.Recent(mc.name, guestlog.Filter{})
			if len(recs) != 1 || recs[0].Level != slog.LevelError || recs[0].Source != runtime.LogSourceGuest ||
				!strings.HasPrefix(recs[0].Message, "handler panic: ") || !strings.Contains(recs[0].Message, "goroutine ") {
				t.Fatalf("log after a panic: %+v", lines(recs))
			}
		})
	}
}
