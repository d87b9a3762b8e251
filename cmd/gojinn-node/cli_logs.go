package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

const logsUsage = "usage: gojinn-node logs FUNCTION [--follow | --all-nodes] [-n N] [--trace-id ID] [--since T] [--json]"

// logs runs `logs FUNCTION`: the function's recent log lines on this
// node (with --all-nodes, on every node, merged) and, with --follow, new
// ones until interrupted.
func (c cli) logs(ctx context.Context, args []string) int {
	fs := c.flagSet("logs")
	follow := fs.Bool("follow", false, "keep printing new lines until interrupted")
	fs.BoolVar(follow, "f", false, "short for --follow")
	n := fs.Int("n", 0, fmt.Sprintf("print the last N lines (default %d, at most %d)", cluster.DefaultLogLimit, cluster.MaxLogLimit))
	allNodes := fs.Bool("all-nodes", false, "the lines of every alive node of the cluster, merged by time, each with its node (not with --follow)")
	traceID := fs.String("trace-id", "", "only lines of this trace (32 hex digits, as in a traceparent header)")
	var since time.Time
	fs.Func("since", "only lines since `T`: an RFC 3339 time or a duration back from now (10m)", func(s string) error {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			since = t
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration (10m)", s)
		}
		since = time.Now().Add(-d)
		return nil
	})
	cl, cf, pos, code := c.connect(fs, args)
	if code != 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(c.stderr, logsUsage)
		return 2
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	show := func(l cluster.LogLine) error {
		if l.Source == cluster.LogSourceNode { // lines were lost on the way
			fmt.Fprintf(c.stderr, "gojinn-node logs: %s\n", l.Message)
			return nil
		}
		if cf.json {
			if l.Node != "" {
				return enc.Encode(l) // the record with its "node"
			}
			return enc.Encode(l.LogRecord)
		}
		_, err := fmt.Fprintln(c.stdout, formatLogLine(l))
		return err
	}
	nSet := false
	fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if nSet {
		// Set (to 0 as well): the node's default applies only when -n
		// is left out.
		if *n < 1 || *n > cluster.MaxLogLimit {
			fmt.Fprintf(c.stderr, "gojinn-node logs: -n %d: give a number of lines from 1 to %d (or leave -n out for the last %d)\n", *n, cluster.MaxLogLimit, cluster.DefaultLogLimit)
			return 2
		}
	}
	if *allNodes && *follow {
		fmt.Fprintln(c.stderr, "gojinn-node logs: --all-nodes cannot be combined with --follow: a follow covers the node asked")
		return 2
	}
	opts := cluster.LogOptions{Limit: *n, TraceID: *traceID, Since: since, Follow: *follow, AllNodes: *allNodes}
	if err := cl.Logs(ctx, pos[0], opts, show); err != nil {
		return c.fail(err)
	}
	return 0
}

// formatLogLine is one line for people: time, level, source, message,
// fields, trace id.
func formatLogLine(l cluster.LogLine) string {
	var b strings.Builder
	b.WriteString(l.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"))
	// One record, one line: a message's own line breaks are escaped.
	msg := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(l.Message)
	if l.Node != "" {
		b.WriteString(" [" + l.Node + "]")
	}
	fmt.Fprintf(&b, " %-5s %-6s %s", l.Level.String(), l.Source, msg)
	if len(l.Fields) > 0 {
		b.WriteByte(' ')
		b.Write(l.Fields)
	}
	if l.Truncated {
		b.WriteString(" (truncated)")
	}
	if l.TraceID != "" {
		b.WriteString(" trace_id=" + l.TraceID)
	}
	return b.String()
}
