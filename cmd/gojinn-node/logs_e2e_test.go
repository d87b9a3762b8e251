package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// A guest's log lines reach `gojinn-node logs`: the echo example deployed
// on a dev node logs one line per request; a request carrying a
// traceparent is found by its trace id, both among the recent lines and
// by a follower that was waiting for it.
func TestLogsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the echo example; make test runs it")
	}
	dir := t.TempDir()
	echo := writeModule(t, dir, "echo.wasm", runtimetest.BuildGo(t, "examples/echo", true))
	n := startDev(t, filepath.Join(dir, "data"), "")
	n.cli(0, "deploy", "echo", echo, "--mode", "pooled", "--route", "/echo/*")

	const (
		trace1 = "4bf92f3577b34da6a3ce929d0e0e4736"
		trace2 = "0af7651916cd43dd8448eb211c80319c"
	)
	send := func(path, trace string) {
		t.Helper()
		if code, _ := n.getTraced("http://"+n.http+path, trace); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
	}
	send("/echo/first", trace1)
	send("/echo/other", trace2)

	// Recent lines, as JSON: exactly the traced request's line.
	out := strings.TrimSpace(n.cli(0, "logs", "echo", "--trace-id", trace1, "--json"))
	var rec runtime.LogRecord
	if err := json.Unmarshal([]byte(out), &rec); err != nil || strings.Contains(out, "\n") {
		t.Fatalf("logs --json: %v\n%s", err, out)
	}
	if rec.Function != "echo" || rec.Version != "1" || rec.Message != "echo" || rec.TraceID != trace1 || len(rec.RequestID) != 24 ||
		rec.Source != runtime.LogSourceGuest || !strings.Contains(string(rec.Fields), `"path":"/echo/first"`) {
		t.Fatalf("logged record: %+v, fields %s", rec, rec.Fields)
	}
	// For people: time, level, source, message, fields, trace id.
	human := n.cli(0, "logs", "echo", "-n", "1")
	if !strings.Contains(human, "INFO  guest  echo {") || !strings.Contains(human, `"path":"/echo/other"`) || !strings.HasSuffix(strings.TrimSpace(human), "trace_id="+trace2) {
		t.Fatalf("logs -n 1:\n%s", human)
	}
	if out := n.cli(1, "logs", "nope"); !strings.Contains(out, `function "nope" is not deployed`) {
		t.Fatalf("logs of an unknown function: %s", out)
	}
	// --all-nodes on a node without a cluster: this node's lines, each
	// naming it (the three-node case is cluster's TestAgentsClusterLogs).
	all := strings.TrimSpace(n.cli(0, "logs", "echo", "--all-nodes", "--trace-id", trace2, "--json"))
	var line struct {
		runtime.LogRecord
		Node string `json:"node"`
	}
	if err := json.Unmarshal([]byte(all), &line); err != nil || line.TraceID != trace2 || line.Node == "" {
		t.Fatalf("logs --all-nodes --json: %v\n%s", err, all)
	}
	if human := n.cli(0, "logs", "echo", "--all-nodes", "-n", "1"); !strings.Contains(human, " ["+line.Node+"] INFO  guest  echo {") {
		t.Fatalf("logs --all-nodes -n 1 does not name the node %s:\n%s", line.Node, human)
	}
	if out := n.cli(2, "logs", "echo", "--all-nodes", "--follow"); !strings.Contains(out, "cannot be combined with --follow") {
		t.Fatalf("logs --all-nodes --follow: %s", out)
	}

	// A follower filtered by a trace id prints the matching backlog, then
	// the request sent while it waits, and nothing else; interrupting it
	// exits 0.
	const trace3 = "11111111111111111111111111111111"
	send("/echo/backlog", trace3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- runEnv(ctx, []string{"logs", "echo", "--follow", "--trace-id", trace3, "--addr", n.admin, "--token", n.token}, stdout, stderr, os.Getenv)
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(stdout.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("the follower did not print %s\nstdout: %s\nstderr: %s", what, stdout.String(), stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("/echo/backlog") // connected
	send("/echo/other", trace2)
	send("/echo/followed", trace3)
	waitFor("/echo/followed")
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("interrupted follow exited %d: %s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower did not stop when interrupted")
	}
	if strings.Contains(stdout.String(), "/echo/other") {
		t.Fatalf("the follower printed another trace's line:\n%s", stdout.String())
	}
}
