package guestlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/guestlog"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func rec(fn string, i int, trace string) runtime.LogRecord {
	return runtime.LogRecord{Time: t0.Add(time.Duration(i) * time.Second), Function: fn, Version: "3", RequestID: fmt.Sprint("r", i),
		TraceID: trace, Level: slog.LevelInfo, Message: fmt.Sprint("line ", i), Source: runtime.LogSourceGuest}
}

func messages(recs []runtime.LogRecord) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Message)
	}
	return strings.Join(s, ",")
}

// The ring keeps the newest lines; Recent filters by trace and time and
// returns the newest Limit, oldest first.
func TestRingAndFilter(t *testing.T) {
	b := guestlog.New(guestlog.Config{LinesPerFunction: 5})
	for i := range 8 {
		trace := "a"
		if i%2 == 1 {
			trace = "b"
		}
		b.Log(rec("fn", i, trace))
	}
	for _, c := range []struct {
		f    guestlog.Filter
		want string
	}{
		{guestlog.Filter{}, "line 3,line 4,line 5,line 6,line 7"},
		{guestlog.Filter{Limit: 2}, "line 6,line 7"},
		{guestlog.Filter{TraceID: "b"}, "line 3,line 5,line 7"},
		{guestlog.Filter{TraceID: "a", Limit: 1}, "line 6"},
		{guestlog.Filter{Since: t0.Add(5 * time.Second)}, "line 5,line 6,line 7"},
		{guestlog.Filter{TraceID: "zzz"}, ""},
	} {
		if got := messages(b.Recent("fn", c.f)); got != c.want {
			t.Errorf("Recent(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
	if !b.Has("fn") || b.Has("other") || b.Recent("other", guestlog.Filter{}) != nil {
		t.Fatal("Has/Recent of an unknown function")
	}
}

// A ring is bounded in bytes as well as lines.
func TestRingBytes(t *testing.T) {
	b := guestlog.New(guestlog.Config{BytesPerFunction: 3000})
	for i := range 10 {
		r := rec("fn", i, "")
		r.Message = strings.Repeat("x", 1000)
		b.Log(r)
	}
	if n := len(b.Recent("fn", guestlog.Filter{})); n != 2 {
		t.Fatalf("kept %d lines of 1000 bytes in 3000 bytes, want 2", n)
	}
}

// Past MaxFunctions (or MaxBytes) the ring of the function that logged
// least recently goes.
func TestEvictsLeastRecentlyLogged(t *testing.T) {
	b := guestlog.New(guestlog.Config{MaxFunctions: 3})
	for _, fn := range []string{"a", "b", "c", "a", "d"} {
		b.Log(rec(fn, 0, ""))
	}
	for fn, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if b.Has(fn) != want {
			t.Errorf("Has(%s) = %v, want %v", fn, !want, want)
		}
	}

	b = guestlog.New(guestlog.Config{MaxBytes: 5000})
	for i, fn := range []string{"a", "b", "c"} {
		r := rec(fn, i, "")
		r.Message = strings.Repeat("x", 2000)
		b.Log(r)
	}
	if b.Has("a") || !b.Has("b") || !b.Has("c") {
		t.Fatalf("over MaxBytes: a %v b %v c %v, want only b and c", b.Has("a"), b.Has("b"), b.Has("c"))
	}
}

// A follower gets the backlog, then new matching lines; its context ends
// the subscription and closes the channel.
func TestSubscribe(t *testing.T) {
	b := guestlog.New(guestlog.Config{})
	b.Log(rec("fn", 0, "t1"))
	b.Log(rec("fn", 1, "t2"))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := b.Subscribe(ctx, "fn", guestlog.Filter{TraceID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := messages(s.Backlog); got != "line 0" {
		t.Fatalf("backlog %q", got)
	}
	b.Log(rec("fn", 2, "t2"))
	b.Log(rec("other", 3, "t1"))
	b.Log(rec("fn", 4, "t1"))
	ev := <-s.C
	if ev.Record.Message != "line 4" || ev.Dropped != 0 {
		t.Fatalf("got %+v, want line 4", ev)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.C:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("canceling the context did not close the subscription")
		}
	}
}

// A follower that does not read loses lines and is told how many; the
// logger never blocks.
func TestSlowSubscriber(t *testing.T) {
	b := guestlog.New(guestlog.Config{SubscriberBuffer: 2})
	s, err := b.Subscribe(context.Background(), "fn", guestlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			b.Log(rec("fn", i, ""))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a follower that does not read")
	}
	if n := s.Lost(); n != 8 {
		t.Fatalf("Lost() = %d, want 8", n)
	}
	<-s.C
	<-s.C
	b.Log(rec("fn", 10, ""))
	ev := <-s.C
	if ev.Record.Message != "line 10" || ev.Dropped != 8 {
		t.Fatalf("after the gap: %+v, want line 10 after 8 dropped", ev)
	}
	s.Close()
	s.Close() // twice is fine
	if _, ok := <-s.C; ok {
		t.Fatal("channel open after Close")
	}
}

// Close ends every follower and refuses new ones; MaxSubscribers bounds
// followers.
func TestCloseAndSubscriberLimit(t *testing.T) {
	b := guestlog.New(guestlog.Config{MaxSubscribers: 1})
	s, err := b.Subscribe(context.Background(), "fn", guestlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(context.Background(), "fn", guestlog.Filter{}); !errors.Is(err, guestlog.ErrTooManySubscribers) {
		t.Fatalf("second follower: %v", err)
	}
	b.Close()
	if _, ok := <-s.C; ok {
		t.Fatal("Close left a follower open")
	}
	if _, err := b.Subscribe(context.Background(), "fn", guestlog.Filter{}); !errors.Is(err, guestlog.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	b.Log(rec("fn", 1, "")) // still kept
	if !b.Has("fn") {
		t.Fatal("a closed buffer stopped keeping records")
	}
}

// Every record is forwarded as one JSON line with its attributes and the
// logger's own (the node name).
func TestForwardsToLogger(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", "n1")
	b := guestlog.New(guestlog.Config{Logger: log})
	r := rec("fn", 1, "4bf92f3577b34da6a3ce929d0e0e4736")
	r.Level = slog.LevelWarn
	r.Fields = json.RawMessage(`{"k":[1,2]}`)
	r.Source = runtime.LogSourceStderr
	b.Log(r)
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := map[string]any{"node": "n1", "function": "fn", "version": "3", "request_id": "r1", "trace_id": r.TraceID,
		"source": "stderr", "level": "WARN", "msg": "line 1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, out.String())
		}
	}
	if f, _ := json.Marshal(got["fields"]); string(f) != `{"k":[1,2]}` {
		t.Errorf("fields = %s", f)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("not one line: %q", out.String())
	}
}
