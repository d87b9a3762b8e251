package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is slog's level for hclog's Trace, below slog.LevelDebug.
const levelTrace = slog.LevelDebug - 4

// hclogAdapter routes hashicorp/raft's hclog output into a *slog.Logger.
// hclog levels map to slog levels (Trace to levelTrace); the logger's name
// ("raft", "raft.net", ...) becomes the "component" attribute. Raft never
// logs log entry payloads, so function env values cannot leak through it.
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
	// level is shared by a logger and everything derived from it, as in
	// hclog; messages below it are dropped before slog sees them.
	level *atomic.Int32
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHCLog returns an hclog.Logger writing to l at hclog level lvl and
// above.
func newHCLog(l *slog.Logger, name string, lvl hclog.Level) hclog.Logger {
	a := &hclogAdapter{l: l, name: name, level: new(atomic.Int32)}
	a.level.Store(int32(lvl))
	return a
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	floor := hclog.Level(a.level.Load())
	if floor == hclog.Off || l < floor && l != hclog.NoLevel {
		return false
	}
	return a.l.Enabled(context.Background(), slogLevel(l))
}

// Log implements hclog.Logger.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if msg == msgAddrFallback {
		level = hclog.Trace // expected for every RPC to a member gossip does not report alive
	}
	if !a.enabled(level) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)+len(args))
	if a.name != "" {
		attrs = append(attrs, "component", a.name)
	}
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	for i := 1; i < len(attrs); i += 2 {
		attrs[i] = hclogValue(attrs[i])
		if attrs[i-1] == "node" {
			// The node's logger carries "node" (its node_name) already;
			// raft's "node" ("Node at ADDR [Candidate]") would be a
			// second key of that name, which JSON readers collapse.
			attrs[i-1] = "raft_node"
		}
	}
	a.l.Log(context.Background(), slogLevel(level), msg, attrs...)
}

// hclogValue renders what hclog callers pass the way hclog would: raft
// logs hclog.Fmt values and structs with a String method, which a JSON
// handler would otherwise print as arrays and empty objects.
func hclogValue(v any) any {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) > 0 {
			if f, ok := x[0].(string); ok {
				return fmt.Sprintf(f, x[1:]...)
			}
		}
		return fmt.Sprint(x...)
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return v
}

// Trace implements hclog.Logger.
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (a *hclogAdapter) Info(msg string, args ...any) { a.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (a *hclogAdapter) Warn(msg string, args ...any) { a.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (a *hclogAdapter) IsInfo() bool { return a.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (a *hclogAdapter) IsWarn() bool { return a.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

// With implements hclog.Logger.
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any(nil), a.implied...), args...)
	return &b
}

// Name implements hclog.Logger.
func (a *hclogAdapter) Name() string { return a.name }

// Named implements hclog.Logger.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	if a.name != "" {
		b.name = a.name + "." + name
	} else {
		b.name = name
	}
	return &b
}

// ResetNamed implements hclog.Logger.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

// SetLevel implements hclog.Logger.
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

// GetLevel implements hclog.Logger.
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Level(a.level.Load()) }

// StandardLogger implements hclog.Logger.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: every line written becomes one
// log record, at opts.ForceLevel, or the level a "[WARN]"-style prefix
// names when opts.InferLevels is set, else Info.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &hclogWriter{a: a, opts: *opts}
}

type hclogWriter struct {
	a    *hclogAdapter
	opts hclog.StandardLoggerOptions
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := strings.TrimSpace(string(line))
		if msg == "" {
			continue
		}
		level := hclog.Info
		if w.opts.ForceLevel != hclog.NoLevel {
			level = w.opts.ForceLevel
		} else if w.opts.InferLevels {
			level, msg = inferLevel(msg)
		}
		w.a.Log(level, msg)
	}
	return len(p), nil
}

// inferLevel strips a "[LEVEL]" prefix (after an optional timestamp, as
// hclog's own InferLevelsWithTimestamp does) and returns its level.
func inferLevel(msg string) (hclog.Level, string) {
	for _, p := range []struct {
		tag   string
		level hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	} {
		if i := strings.Index(msg, p.tag); i >= 0 && i < 40 {
			return p.level, strings.TrimSpace(msg[i+len(p.tag):])
		}
	}
	return hclog.Info, msg
}
