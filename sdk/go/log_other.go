//go:build !wasip1

package gojinn

import (
	"log/slog"
	"os"
)

// Outside a wasip1 guest there is no node to send lines to: they go to
// stderr as "LEVEL message {fields}", so a handler tested on the host
// still shows what it logs.
func hostLog(level int32, msg string, fields []byte) int32 {
	line := make([]byte, 0, len(msg)+len(fields)+8)
	line = append(line, slog.Level(level).String()...)
	line = append(line, ' ')
	line = append(line, msg...)
	if len(fields) > 0 {
		line = append(line, ' ')
		line = append(line, fields...)
	}
	line = append(line, '\n')
	_, _ = os.Stderr.Write(line) // nowhere to report a failed write to stderr
	return logOK
}
