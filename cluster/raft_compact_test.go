package cluster

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// Large entries make a snapshot by bytes, not only after raft's 8192
// entries, and the log keeps about TrailingLogBytes of them rather than
// 10240: a guest putting 1 MiB KV values in a loop could otherwise fill
// gigabytes of disk in minutes. Small entries keep the usual count.
func TestRaftLogBoundedByBytes(t *testing.T) {
	cfg := inmemConfig(t, t.TempDir())
	cfg.LogBytesSnapshot = 1 << 20   // a snapshot per MiB written
	cfg.TrailingLogBytes = 256 << 10 // keeping about 256 KiB
	s := openStore(t, cfg)
	ctx := testCtx(t)
	value := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 200 { // 12.5 MiB in 64 KiB entries
		if _, err := s.KVPut(ctx, "big", fmt.Sprint(i%4), value, KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the log truncated by size", func() bool {
		first, err := s.Node().bolt.FirstIndex()
		last, err2 := s.Node().bolt.LastIndex()
		// 1 MiB between snapshots (16 entries) and the floor of 64 kept:
		// at most ~80 entries, against 200 and more without the size
		// trigger (raft's own snapshots only every 8192 entries).
		return err == nil && err2 == nil && first > 1 && last-first+1 <= 100
	})
	if got := s.Node().raft.ReloadableConfig().TrailingLogs; got != minTrailingLogs {
		t.Errorf("TrailingLogs %d for 64 KiB entries and 256 KiB to keep, want the floor %d", got, minTrailingLogs)
	}
	if e, err := s.KVGet(ctx, "big", "3", ConsistencyLinearizable); err != nil || len(e.Value) != len(value) {
		t.Fatalf("after compaction: %d bytes, %v", len(e.Value), err)
	}
}
