package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestGossipLogLevels(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ml := newMemberlistLogger(l)
	ml.Printf("[DEBUG] memberlist: Stream connection from=%s", "127.0.0.1:1")
	ml.Printf("[INFO] memberlist: Suspect %s has failed", "n2")
	ml.Printf("[WARN] memberlist: Binding to public address without encryption!")
	ml.Printf("[ERR] memberlist: Failed fallback ping: EOF")
	ml.Printf("[ERR] Failed to shutdown transport: x")
	ml.Printf("no prefix at all")

	want := []struct{ level, msg string }{
		{"DEBUG", "Stream connection from=127.0.0.1:1"},
		{"INFO", "Suspect n2 has failed"},
		{"WARN", "Binding to public address without encryption!"},
		{"ERROR", "Failed fallback ping: EOF"},
		{"ERROR", "Failed to shutdown transport: x"},
		{"INFO", "no prefix at all"},
	}
	dec := json.NewDecoder(&buf)
	for _, w := range want {
		var rec struct {
			Level, Msg, Component string
		}
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("want %v: %v", w, err)
		}
		if rec.Level != w.level || rec.Msg != w.msg || rec.Component != "memberlist" {
			t.Errorf("got %+v, want %+v", rec, w)
		}
	}
}
