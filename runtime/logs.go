package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// LogSource says where a guest's log line came from.
type LogSource string

// Log sources.
const (
	// LogSourceGuest is a line the guest sent through gojinn_log_v1.
	LogSourceGuest LogSource = "guest"
	// LogSourceStdout is a line the guest wrote to stdout (not in isolated
	// command mode, where stdout is the response).
	LogSourceStdout LogSource = "stdout"
	// LogSourceStderr is a line the guest wrote to stderr.
	LogSourceStderr LogSource = "stderr"
	// LogSourceHost is a line the node wrote about the function: an
	// invocation it failed (timeout, CPU budget, memory, trap...).
	LogSourceHost LogSource = "host"
)

// Caps of one log line, applied before anything is copied out of the
// guest.
const (
	// MaxLogMessage is the longest message kept; longer ones are truncated
	// and marked.
	MaxLogMessage = 8 << 10
	// MaxLogFields is the largest fields object kept; a larger one is
	// dropped with a fields_error note.
	MaxLogFields = 16 << 10
)

// Defaults of Config.LogRate and Config.LogBurst.
const (
	DefaultLogRate  = 100
	DefaultLogBurst = 1000
)

// LogRecord is one line a guest logged: through gojinn_log_v1, or a line
// of its stdout or stderr.
type LogRecord struct {
	// Time is when the host received the line (for stdout and stderr: when
	// the invocation ended).
	Time time.Time `json:"time"`
	// Function and Version name the function that logged.
	Function string `json:"function"`
	Version  string `json:"version,omitempty"`
	// RequestID is the invocation's request id.
	RequestID string `json:"request_id,omitempty"`
	// TraceID is the W3C trace id of the request's traceparent, when it
	// had a valid one.
	TraceID string `json:"trace_id,omitempty"`
	// Level is slog's: -4 debug, 0 info, 4 warn, 8 error.
	Level slog.Level `json:"level"`
	// Message is the line, at most MaxLogMessage bytes.
	Message string `json:"msg"`
	// Fields is the guest's JSON object, or {"fields_error": "..."} when it
	// sent something else; nil when it sent none.
	Fields json.RawMessage `json:"fields,omitempty"`
	// Source is guest, stdout or stderr.
	Source LogSource `json:"source"`
	// Truncated reports that the message (or, for stdout and stderr, the
	// captured output) was cut at a cap, or the fields were over theirs.
	Truncated bool `json:"truncated,omitempty"`
}

// Attrs returns the record's attributes for a slog line (level and
// message are the line's own): function, version, request_id, trace_id,
// source, fields and truncated, leaving out empty ones.
func (r *LogRecord) Attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("function", r.Function))
	for _, a := range [...]struct{ k, v string }{{"version", r.Version}, {"request_id", r.RequestID}, {"trace_id", r.TraceID}} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	attrs = append(attrs, slog.String("source", string(r.Source)))
	if len(r.Fields) > 0 {
		attrs = append(attrs, slog.Any("fields", r.Fields))
	}
	if r.Truncated {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	return attrs
}

// LogSink receives the records of every function. The runtime calls Log
// on the goroutine running the guest, so it must not block; it may keep
// rec (nothing in it is reused).
type LogSink interface {
	Log(rec LogRecord)
}

// ClampLogLevel maps any level to the nearest of debug (-4), info (0),
// warn (4) and error (8); a level halfway between two goes to the more
// severe one, so a line is never hidden by rounding.
func ClampLogLevel(l int32) slog.Level {
	switch {
	case l <= -3:
		return slog.LevelDebug
	case l <= 1:
		return slog.LevelInfo
	case l <= 5:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// TraceID returns the trace id of a W3C traceparent
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when tp is not one.
func TraceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
		zero = zero && c == '0'
	}
	if zero {
		return ""
	}
	return id
}

// logState is a function's log rate limit (a token bucket) and counters.
// Its zero value is ready: the bucket starts full on first use.
type logState struct {
	lines   atomic.Uint64 // records delivered
	dropped atomic.Uint64 // records refused by the rate limit

	mu     sync.Mutex
	tokens float64
	last   time.Time // zero until the first record
}

// allow takes one token, refilled at rate per second up to burst; a
// negative rate means no limit.
func (s *logState) allow(now time.Time, rate float64, burst int) bool {
	if rate < 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.IsZero() {
		s.tokens = float64(burst)
	} else if dt := now.Sub(s.last).Seconds(); dt > 0 {
		s.tokens = math.Min(float64(burst), s.tokens+dt*rate)
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// logRate returns the configured rate with the default for 0.
func (c *Config) logRate() float64 {
	if c.LogRate == 0 {
		return DefaultLogRate
	}
	return c.LogRate
}

// logBurst returns the configured burst with the default for 0.
func (c *Config) logBurst() int {
	if c.LogBurst == 0 {
		return DefaultLogBurst
	}
	return c.LogBurst
}

// logCall is the host side of one invocation of a module that imports
// gojinn_log_v1; like kvCall, a fresh one per invocation reaches the host
// function through the call's context.
type logCall struct {
	fn        *Function
	requestID string
	traceID   string
}

type logCallKey struct{}

// withLogCall returns ctx carrying a new logCall for req.
func (f *Function) withLogCall(ctx context.Context, req *protocol.Request) context.Context {
	c := &logCall{fn: f, requestID: req.RequestID, traceID: TraceID(req.TraceParent)}
	return context.WithValue(ctx, logCallKey{}, c)
}

// logCallFrom returns the invocation's logCall, or nil outside one.
func logCallFrom(ctx context.Context) *logCall {
	c, _ := ctx.Value(logCallKey{}).(*logCall)
	return c
}

// newRecord returns a record of f for the request, at now.
func (f *Function) newRecord(now time.Time, requestID, traceID string, source LogSource, level slog.Level) LogRecord {
	return LogRecord{Time: now, Function: f.spec.Name, Version: f.spec.Version, RequestID: requestID, TraceID: traceID, Level: level, Source: source}
}

// admitLog applies the function's rate limit, counting what it refuses.
func (f *Function) admitLog(now time.Time) bool {
	cfg := &f.engine.cfg
	if f.logs.allow(now, cfg.logRate(), cfg.logBurst()) {
		return true
	}
	f.logs.dropped.Add(1)
	f.engine.cfg.Metrics.logDropped(f.spec.Name)
	return false
}

// emitLog delivers an admitted record to Config.Logs, or to Config.Logger
// at the record's level when there is no sink.
func (f *Function) emitLog(rec LogRecord) {
	f.logs.lines.Add(1)
	f.engine.cfg.Metrics.logLine(f.spec.Name, rec.Source)
	if s := f.engine.cfg.Logs; s != nil {
		s.Log(rec)
		return
	}
	f.engine.log.LogAttrs(context.Background(), rec.Level, rec.Message, rec.Attrs()...)
}

// truncatedMarker is what capWriter.take appends when it dropped output.
const truncatedMarker = "\n[output truncated]\n"

// logOutput turns what the guest wrote to stdout and stderr during one
// invocation into records, one per non-empty line: stdout at info, stderr
// at warn. A failed invocation's stderr is in its InvokeError.
func (f *Function) logOutput(req *protocol.Request, res *Result, err error) {
	var stdout, stderr []byte
	if res != nil {
		stdout, stderr = res.Stdout, res.Stderr
	} else {
		var ie *InvokeError
		if errors.As(err, &ie) {
			stderr = ie.Stderr
		}
	}
	if len(stdout) == 0 && len(stderr) == 0 {
		return
	}
	now := time.Now()
	traceID := TraceID(req.TraceParent)
	f.logLines(now, req.RequestID, traceID, LogSourceStdout, slog.LevelInfo, stdout)
	f.logLines(now, req.RequestID, traceID, LogSourceStderr, slog.LevelWarn, stderr)
}

// logLines emits one record per non-empty line of out.
func (f *Function) logLines(now time.Time, requestID, traceID string, source LogSource, level slog.Level, out []byte) {
	cut := false
	if bytes.HasSuffix(out, []byte(truncatedMarker)) {
		out, cut = out[:len(out)-len(truncatedMarker)], true
	}
	for len(out) > 0 {
		line := out
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			line, out = out[:i], out[i+1:]
		} else {
			out = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if !f.admitLog(now) {
			if cut && len(out) == 0 {
				// The line that would say the output was cut is over the
				// rate limit: say it anyway, once per invocation, or the
				// cut is invisible (the other lines dropped are counted).
				rec := f.newRecord(now, requestID, traceID, source, level)
				rec.Message, rec.Truncated = "[output truncated at the capture limit; earlier lines dropped by the log rate limit]", true
				f.emitLog(rec)
			}
			continue
		}
		rec := f.newRecord(now, requestID, traceID, source, level)
		msg, trunc := capMessage(line)
		rec.Message, rec.Truncated = logText(msg), trunc || (cut && len(out) == 0)
		f.emitLog(rec)
	}
}

// logText is the message of a record made of guest bytes: bytes that are
// not UTF-8 become U+FFFD, so the node's JSON log and the logs API stay
// valid UTF-8 whatever a guest writes (a raw byte of a request, say).
func logText(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

// capMessage cuts b to MaxLogMessage bytes without splitting a UTF-8
// sequence, reporting whether it cut.
func capMessage(b []byte) ([]byte, bool) {
	if len(b) <= MaxLogMessage {
		return b, false
	}
	b = b[:MaxLogMessage]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b, true
}
