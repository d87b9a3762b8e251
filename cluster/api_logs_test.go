package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/guestlog"
	"github.com/gojinn/gojinn/storage"
)

const (
	traceA = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceB = "0af7651916cd43dd8448eb211c80319c"
)

func logRec(fn string, i int, trace string) runtime.LogRecord {
	return runtime.LogRecord{Time: time.Now().UTC(), Function: fn, Version: "1", RequestID: fmt.Sprint("req-", i), TraceID: trace,
		Level: slog.LevelInfo, Message: fmt.Sprint("line ", i), Fields: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Source: runtime.LogSourceGuest}
}

// newLogHarness is an API whose log source is a guestlog.Buffer holding
// lines of the deployed function fn and of gone, which is not deployed.
func newLogHarness(t *testing.T, tweak func(*APIConfig)) (*apiHarness, *guestlog.Buffer) {
	buf := guestlog.New(guestlog.Config{})
	h := newAPIHarness(t, func(c *APIConfig) {
		c.Logs = buf
		if tweak != nil {
			tweak(c)
		}
	})
	if _, err := h.reg.Deploy(context.Background(), "fn", storage.Spec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reg.Deploy(context.Background(), "quiet", storage.Spec{}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		trace := traceA
		if i%2 == 1 {
			trace = traceB
		}
		buf.Log(logRec("fn", i, trace))
	}
	buf.Log(logRec("gone", 0, ""))
	return h, buf
}

// collect reads name's lines through the client.
func collect(t *testing.T, c *Client, name string, opts LogOptions) ([]LogLine, error) {
	t.Helper()
	var out []LogLine
	err := c.Logs(testCtx(t), name, opts, func(l LogLine) error {
		out = append(out, l)
		return nil
	})
	return out, err
}

func msgs(lines []LogLine) string {
	var s []string
	for _, l := range lines {
		s = append(s, l.Message)
	}
	return strings.Join(s, ",")
}

// Recent lines as NDJSON, filtered by trace id, limit and time; unknown
// functions are 404; bad parameters are 400 naming the parameter.
func TestAPILogs(t *testing.T) {
	h, _ := newLogHarness(t, nil)
	r := h.do("GET", "/v1/functions/fn/logs?limit=2", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	rows := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
	if len(rows) != 2 {
		t.Fatalf("limit=2 gave %d lines: %q", len(rows), r.body)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(rows[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"function": "fn", "version": "1", "request_id": "req-4", "trace_id": traceA, "level": "INFO", "msg": "line 4", "source": "guest"} {
		if first[k] != v {
			t.Errorf("%s = %v, want %v in %s", k, first[k], v, rows[0])
		}
	}
	if f, _ := first["fields"].(map[string]any); f["i"] != 4.0 {
		t.Errorf("fields %v", first["fields"])
	}

	for _, c := range []struct {
		name string
		opts LogOptions
		want string
	}{
		{"fn", LogOptions{}, "line 0,line 1,line 2,line 3,line 4,line 5"},
		{"fn", LogOptions{TraceID: traceB}, "line 1,line 3,line 5"},
		{"fn", LogOptions{TraceID: strings.ToUpper(traceA), Limit: 1}, "line 4"},
		{"fn", LogOptions{Since: time.Now().Add(time.Hour)}, ""},
		{"quiet", LogOptions{}, ""}, // deployed, nothing logged yet
		{"gone", LogOptions{}, "line 0"},
	} {
		got, err := collect(t, h.client, c.name, c.opts)
		if err != nil || msgs(got) != c.want {
			t.Errorf("%s %+v: %q %v, want %q", c.name, c.opts, msgs(got), err, c.want)
		}
	}

	_, err := collect(t, h.client, "nope", LogOptions{})
	if !errors.Is(err, storage.ErrFunctionNotFound) {
		t.Fatalf("unknown function: %v", err)
	}
	if r := h.do("GET", "/v1/functions/nope/logs", nil); r.status != 404 || r.apiErr(t).Code != CodeFunctionNotFound {
		t.Fatalf("unknown function: %d %s", r.status, r.body)
	}
	for query, param := range map[string]string{
		"limit=0": "limit", "limit=x": "limit", "limit=10001": "limit",
		"trace_id=xyz": "trace_id", "trace_id=00000000000000000000000000000000": "trace_id",
		"since=yesterday": "since", "follow=maybe": "follow",
	} {
		r := h.do("GET", "/v1/functions/fn/logs?"+query, nil)
		if r.status != 400 || !strings.HasPrefix(r.apiErr(t).Message, param+" ") {
			t.Errorf("?%s: %d %s, want 400 naming %s", query, r.status, r.body, param)
		}
	}
	if r := h.do("GET", "/v1/functions/fn/logs?since=10m", nil); r.status != 200 || strings.Count(r.body, "\n") != 6 {
		t.Errorf("since=10m: %d %q", r.status, r.body)
	}
	if r := h.do("GET", "/v1/functions/fn/logs", nil, "Authorization", ""); r.status != 401 {
		t.Fatalf("without the token: %d", r.status)
	}
	if r := h.do("GET", "/v1/functions/a..b/logs", nil); r.status != 400 {
		t.Fatalf("bad name: %d %s", r.status, r.body)
	}

	h2 := newAPIHarness(t, nil)
	if r := h2.do("GET", "/v1/functions/fn/logs", nil); r.status != 501 || r.apiErr(t).Code != CodeNotEnabled {
		t.Fatalf("without a log source: %d %s", r.status, r.body)
	}
}

// A follow outlives the server's read and write timeouts (keepalives
// every heartbeat), delivers new matching lines as they come, and ends
// when the client goes away.
func TestAPILogsFollow(t *testing.T) {
	buf := guestlog.New(guestlog.Config{})
	buf.Log(logRec("fn", 0, traceA))
	api, err := NewAPI(APIConfig{Registry: newMemRegistry(), Blobs: newMemBlobs(), TokenHash: HashToken(testToken), Logs: buf, LogHeartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	srv.Config.WriteTimeout, srv.Config.ReadTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/functions/fn/logs?follow=true&trace_id="+traceA, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("the stream ended: %v", sc.Err())
		}
		return sc.Text()
	}
	if l := next(); !strings.Contains(l, `"msg":"line 0"`) {
		t.Fatalf("backlog: %q", l)
	}
	// Keepalives past both timeouts: 25 x 20 ms = 500 ms > 200 ms.
	start := time.Now()
	for beats := 0; beats < 25; {
		if next() == "" {
			beats++
		}
	}
	if time.Since(start) < srv.Config.WriteTimeout {
		t.Fatalf("25 heartbeats came in %v", time.Since(start))
	}
	buf.Log(logRec("fn", 1, traceB)) // another trace: filtered out
	buf.Log(logRec("fn", 2, traceA))
	for {
		l := next()
		if l == "" {
			continue
		}
		var line LogLine
		if err := json.Unmarshal([]byte(l), &line); err != nil || line.Message != "line 2" || line.TraceID != traceA {
			t.Fatalf("followed line %q (%v), want line 2", l, err)
		}
		break
	}
	cancel()
}

// The client's follow delivers new lines and returns nil when its
// context ends; Close on the buffer (node shutdown) ends a follow.
func TestClientLogsFollow(t *testing.T) {
	h, buf := newLogHarness(t, func(c *APIConfig) { c.LogHeartbeat = 50 * time.Millisecond })
	ctx, cancel := context.WithCancel(testCtx(t))
	got := make(chan LogLine, 16)
	done := make(chan error, 1)
	go func() {
		done <- h.client.Logs(ctx, "fn", LogOptions{Follow: true, Limit: 1}, func(l LogLine) error {
			got <- l
			return nil
		})
	}()
	if l := <-got; l.Message != "line 5" {
		t.Fatalf("backlog of 1: %q", l.Message)
	}
	buf.Log(logRec("fn", 9, traceA))
	if l := <-got; l.Message != "line 9" {
		t.Fatalf("followed: %q", l.Message)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a canceled follow returned %v", err)
	}

	done2 := make(chan error, 1)
	go func() {
		done2 <- h.client.Logs(testCtx(t), "fn", LogOptions{Follow: true, Limit: 1}, func(LogLine) error { return nil })
	}()
	// Close until the follower is registered and ended by it.
	for {
		buf.Close()
		select {
		case err := <-done2:
			// Closed before the follow began: 503; during it: the end.
			if err == nil || !strings.Contains(err.Error(), "ended the log stream") && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("follow after Close: %v", err)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
