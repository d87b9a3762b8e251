package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newMemberlistLogger returns the *log.Logger memberlist wants, writing
// into l. memberlist prefixes every line with a level ("[DEBUG]",
// "[INFO]", "[WARN]", "[ERR]") and usually "memberlist: "; the writer maps
// the level to slog's and strips both. slog.NewLogLogger alone would log
// every line at one level.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(memberlistLogWriter{l: l.With("component", "memberlist")}, "", 0)
}

// memberlistLogWriter receives one log line per Write (log.Logger writes
// each message at once).
type memberlistLogWriter struct {
	l *slog.Logger
}

var memberlistLevels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[TRACE]"), levelTrace},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelError},
	{[]byte("[ERROR]"), slog.LevelError},
}

// Write implements io.Writer.
func (w memberlistLogWriter) Write(p []byte) (int, error) {
	msg, level := parseMemberlistLine(p)
	if w.l.Enabled(context.Background(), level) {
		w.l.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// parseMemberlistLine splits a memberlist log line into its message and
// level; a line without a known prefix is logged at Info.
func parseMemberlistLine(p []byte) (string, slog.Level) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, lv := range memberlistLevels {
		if rest, ok := bytes.CutPrefix(line, lv.prefix); ok {
			line, level = bytes.TrimSpace(rest), lv.level
			break
		}
	}
	line, _ = bytes.CutPrefix(line, []byte("memberlist: "))
	return string(line), level
}
