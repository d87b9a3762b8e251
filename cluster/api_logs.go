package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/guestlog"
)

// LogSource is what the admin API needs to serve functions' guest logs.
// *guestlog.Buffer satisfies it.
type LogSource interface {
	// Has reports whether records of function are buffered.
	Has(function string) bool
	// Recent returns the buffered records of function matching f, oldest
	// first.
	Recent(function string, f guestlog.Filter) []runtime.LogRecord
	// Subscribe follows function's new records matching f, with the
	// matching backlog; the subscription ends with ctx.
	Subscribe(ctx context.Context, function string, f guestlog.Filter) (*guestlog.Subscription, error)
}

var _ LogSource = (*guestlog.Buffer)(nil)

// Bounds of GET /v1/functions/{name}/logs.
const (
	// DefaultLogLimit is how many recent lines the endpoint returns when
	// the request does not say.
	DefaultLogLimit = 100
	// MaxLogLimit is the largest ?limit= accepted.
	MaxLogLimit = 10000
	// DefaultLogHeartbeat is how often a follower with nothing new gets a
	// keepalive (an empty line).
	DefaultLogHeartbeat = 15 * time.Second
)

// LogSourceNode marks a line the node adds to a followed stream: a note
// that lines were dropped.
const LogSourceNode runtime.LogSource = "node"

// LogLine is one line of the NDJSON body of GET
// /v1/functions/{name}/logs: a record, or (Source LogSourceNode) a note
// that Dropped lines were lost because the follower read too slowly.
type LogLine struct {
	runtime.LogRecord
	// Dropped is set on a node note: how many lines were not delivered.
	Dropped uint64 `json:"dropped,omitempty"`
	// Node is the ID of the node that holds the line (?nodes=all only).
	Node string `json:"node,omitempty"`
}

// logRoutes are the guest log endpoints.
func (a *api) logRoutes() []apiRoute {
	return []apiRoute{
		{"GET", "/v1/functions/{name}/logs", true, a.functionLogs},
	}
}

// logQuery parses ?limit=, ?trace_id=, ?since= and ?follow=.
func logQuery(q url.Values) (guestlog.Filter, bool, error) {
	f := guestlog.Filter{Limit: DefaultLogLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLogLimit {
			return f, false, apiErrorf(http.StatusBadRequest, CodeInvalid, "limit %q: must be a whole number from 1 to %d", s, MaxLogLimit)
		}
		f.Limit = n
	}
	if s := q.Get("trace_id"); s != "" {
		id := strings.ToLower(s)
		if runtime.TraceID("00-"+id+"-0000000000000001-01") != id {
			return f, false, apiErrorf(http.StatusBadRequest, CodeInvalid, "trace_id %q: must be 32 hex digits, not all zero (the trace id of a W3C traceparent)", s)
		}
		f.TraceID = id
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			d, derr := time.ParseDuration(s)
			if derr != nil || d < 0 {
				return f, false, apiErrorf(http.StatusBadRequest, CodeInvalid, "since %q: must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (10m)", s)
			}
			t = time.Now().Add(-d)
		}
		f.Since = t
	}
	follow := false
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, false, apiErrorf(http.StatusBadRequest, CodeInvalid, "follow %q: must be true or false", s)
		}
		follow = b
	}
	return f, follow, nil
}

// functionLogs answers GET /v1/functions/{name}/logs: the function's
// recent log lines as NDJSON and, with ?follow=true, new ones as they
// come, until the client goes away.
func (a *api) functionLogs(w http.ResponseWriter, r *http.Request) error {
	name, err := pathName(r)
	if err != nil {
		return err
	}
	f, follow, err := logQuery(r.URL.Query())
	if err != nil {
		return err
	}
	logs := a.cfg.Logs
	if logs == nil {
		return apiErrorf(http.StatusNotImplemented, CodeNotEnabled, "this node keeps no guest logs (APIConfig.Logs is not set)")
	}
	all, err := nodesQuery(r.URL.Query(), follow)
	if err != nil {
		return err
	}
	if all {
		return a.clusterLogs(w, r, logs, name, f)
	}
	if _, ok := a.cfg.Registry.Function(name); !ok && !logs.Has(name) {
		return apiErrorf(http.StatusNotFound, CodeFunctionNotFound, "function %q is not deployed and this node holds no log lines of it; list functions with GET /v1/functions (`gojinn-node functions`)", name)
	}
	if !follow {
		startNDJSON(w)
		enc := newLineEncoder(w)
		for _, rec := range logs.Recent(name, f) {
			if err := enc.Encode(LogLine{LogRecord: rec}); err != nil {
				return nil // the client went away; nobody reads an error
			}
		}
		return nil
	}
	return a.followLogs(w, r, logs, name, f)
}

// nodesQuery parses ?nodes=: this (the default) or all.
func nodesQuery(q url.Values, follow bool) (all bool, err error) {
	switch s := q.Get("nodes"); s {
	case "", "this":
		return false, nil
	case "all":
		if follow {
			return false, apiErrorf(http.StatusBadRequest, CodeInvalid, "nodes=all cannot follow: a follow covers the node asked; follow each node, or leave out nodes=all")
		}
		return true, nil
	default:
		return false, apiErrorf(http.StatusBadRequest, CodeInvalid, "nodes %q: must be this or all", s)
	}
}

// clusterLogs answers ?nodes=all: this node's lines and every other alive
// member's (APIConfig.PeerLogs), merged by time, the newest f.Limit of
// them, each naming its node. A note line (source node) precedes them for
// each member that did not answer.
func (a *api) clusterLogs(w http.ResponseWriter, r *http.Request, logs LogSource, name string, f guestlog.Filter) error {
	var lines []LogLine
	for _, rec := range logs.Recent(name, f) {
		lines = append(lines, LogLine{LogRecord: rec, Node: a.cfg.NodeID})
	}
	var notes []LogLine
	if a.cfg.PeerLogs != nil {
		q := url.Values{"limit": {strconv.Itoa(f.Limit)}}
		if f.TraceID != "" {
			q.Set("trace_id", f.TraceID)
		}
		if !f.Since.IsZero() {
			q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
		}
		for _, nl := range a.cfg.PeerLogs(r.Context(), name, q) {
			if nl.Err != nil {
				notes = append(notes, LogLine{Node: nl.Node, LogRecord: runtime.LogRecord{
					Time: time.Now().UTC(), Function: name, Level: slog.LevelWarn, Source: LogSourceNode,
					Message: fmt.Sprintf("node %s did not answer; its lines are missing: %v", nl.Node, nl.Err),
				}})
				continue
			}
			for _, rec := range nl.Lines {
				lines = append(lines, LogLine{LogRecord: rec, Node: nl.Node})
			}
		}
	}
	if len(lines) == 0 && len(notes) == 0 {
		if _, ok := a.cfg.Registry.Function(name); !ok {
			return apiErrorf(http.StatusNotFound, CodeFunctionNotFound, "function %q is not deployed and no node holds log lines of it; list functions with GET /v1/functions (`gojinn-node functions`)", name)
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	if len(lines) > f.Limit {
		lines = lines[len(lines)-f.Limit:]
	}
	startNDJSON(w)
	enc := newLineEncoder(w)
	for _, l := range append(notes, lines...) {
		if enc.Encode(l) != nil {
			return nil // the client went away; nobody reads an error
		}
	}
	return nil
}

// followLogs streams the backlog and then new records, flushing each,
// with an empty line as keepalive every heartbeat. The server's read and
// write deadlines are lifted for this response, so a follow outlives
// them; it ends when the client goes away or the node stops.
func (a *api) followLogs(w http.ResponseWriter, r *http.Request, logs LogSource, name string, f guestlog.Filter) error {
	ctx := r.Context()
	sub, err := logs.Subscribe(ctx, name, f)
	if err != nil {
		if errors.Is(err, guestlog.ErrTooManySubscribers) || errors.Is(err, guestlog.ErrClosed) {
			ae := apiErrorf(http.StatusServiceUnavailable, CodeUnavailable, "cannot follow the logs now: %v", err)
			ae.RetryAfter = retryAfter
			return ae
		}
		return err
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	for _, clear := range []func(time.Time) error{rc.SetWriteDeadline, rc.SetReadDeadline} {
		if err := clear(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return fmt.Errorf("lift the connection deadline for a log follow: %w", err)
		}
	}
	startNDJSON(w)
	enc := newLineEncoder(w)
	for _, rec := range sub.Backlog {
		if enc.Encode(LogLine{LogRecord: rec}) != nil {
			return nil
		}
	}
	if rc.Flush() != nil {
		return nil
	}
	every := a.cfg.LogHeartbeat
	if every <= 0 {
		every = DefaultLogHeartbeat
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil // the node is stopping
			}
			if ev.Dropped > 0 && enc.Encode(droppedNote(name, ev.Dropped)) != nil {
				return nil
			}
			if enc.Encode(LogLine{LogRecord: ev.Record}) != nil || rc.Flush() != nil {
				return nil
			}
		case <-tick.C:
			if _, err := w.Write([]byte("\n")); err != nil || rc.Flush() != nil {
				return nil
			}
		}
	}
}

// droppedNote is the line that tells a follower it lost n lines.
func droppedNote(function string, n uint64) LogLine {
	return LogLine{
		LogRecord: runtime.LogRecord{
			Time: time.Now(), Function: function, Level: slog.LevelWarn, Source: LogSourceNode,
			Message: fmt.Sprintf("%d log lines were not sent: this follower read too slowly", n),
		},
		Dropped: n,
	}
}

// startNDJSON writes the headers of an NDJSON answer.
func startNDJSON(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
}

// newLineEncoder encodes one JSON value per line.
func newLineEncoder(w http.ResponseWriter) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}
