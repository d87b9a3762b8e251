package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// records decodes JSON log lines.
func records(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	b.Reset()
	return out
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	sl := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: levelTrace}))
	l := newHCLog(sl, "raft", hclog.Trace)

	l.Trace("t")
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e", "error", "boom")
	want := []string{"DEBUG-4", "DEBUG", "INFO", "WARN", "ERROR"}
	recs := records(t, &buf)
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r["level"] != want[i] || r["component"] != "raft" {
			t.Errorf("record %d: %v; want level %s, component raft", i, r, want[i])
		}
	}
	if recs[4]["error"] != "boom" {
		t.Errorf("args lost: %v", recs[4])
	}

	// raft's own "node" does not make a second "node" key beside the
	// node's name.
	named := newHCLog(sl.With("node", "edge-1"), "raft", hclog.Trace)
	named.Info("entering candidate state", "node", "Node at 10.0.0.1:7947 [Candidate]", "term", 2)
	line := buf.String()
	if strings.Count(line, `"node":`) != 1 || !strings.Contains(line, `"node":"edge-1"`) || !strings.Contains(line, `"raft_node":"Node at 10.0.0.1:7947 [Candidate]"`) {
		t.Errorf("raft's node attribute: %s", line)
	}
	buf.Reset()

	n := l.Named("net").With("peer", "10.0.0.2:7947")
	if n.Name() != "raft.net" || len(n.ImpliedArgs()) != 2 {
		t.Errorf("Named/With: name %q, implied %v", n.Name(), n.ImpliedArgs())
	}
	n.Info("dial", "attempt", 1)
	r := records(t, &buf)[0]
	if r["component"] != "raft.net" || r["peer"] != "10.0.0.2:7947" || r["attempt"] != float64(1) {
		t.Errorf("named record %v", r)
	}
	if l.ResetNamed("snapshot").Name() != "snapshot" {
		t.Error("ResetNamed")
	}

	// The level is shared with derived loggers, as in hclog.
	l.SetLevel(hclog.Warn)
	if l.GetLevel() != hclog.Warn || n.IsInfo() || !n.IsWarn() {
		t.Errorf("SetLevel: level %v, derived IsInfo %v", l.GetLevel(), n.IsInfo())
	}
	n.Info("dropped")
	l.Debug("dropped")
	if buf.Len() != 0 {
		t.Errorf("below the level: %s", buf.String())
	}
	l.SetLevel(hclog.Off)
	l.Error("dropped")
	if buf.Len() != 0 || l.IsError() {
		t.Error("Off still logs")
	}
	l.SetLevel(hclog.Trace)

	// The slog handler's level applies too.
	var quiet bytes.Buffer
	q := newHCLog(slog.New(slog.NewJSONHandler(&quiet, nil)), "raft", hclog.Trace)
	if q.IsDebug() || !q.IsInfo() {
		t.Error("the handler's Info level is not honoured")
	}
	q.Debug("dropped")
	if quiet.Len() != 0 {
		t.Error("debug passed an Info handler")
	}

	// Standard library adapters.
	w := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	w.Write([]byte("2026/01/01 00:00:00 [WARN] raft: slow\n[DEBUG] quiet\nplain\n"))
	recs = records(t, &buf)
	if len(recs) != 3 || recs[0]["level"] != "WARN" || recs[0]["msg"] != "raft: slow" ||
		recs[1]["level"] != "DEBUG" || recs[2]["level"] != "INFO" {
		t.Errorf("inferred levels: %v", recs)
	}
	l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("forced")
	if r := records(t, &buf); len(r) != 1 || r[0]["level"] != "ERROR" || r[0]["msg"] != "forced" {
		t.Errorf("forced level: %v", r)
	}
	l.StandardLogger(nil).Print("default")
	if r := records(t, &buf); len(r) != 1 || r[0]["level"] != "INFO" {
		t.Errorf("default level: %v", r)
	}
}
