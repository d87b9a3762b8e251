package cluster

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// countingLogStore counts the bytes and entries stored in the Raft log
// since the last snapshot it was told of, and signals due once the bytes
// pass trigger (Config.LogBytesSnapshot).
type countingLogStore struct {
	raft.LogStore
	trigger int64
	bytes   atomic.Int64
	entries atomic.Int64
	due     chan struct{}
}

// StoreLog implements raft.LogStore.
func (s *countingLogStore) StoreLog(l *raft.Log) error {
	if err := s.LogStore.StoreLog(l); err != nil {
		return err
	}
	s.add(int64(len(l.Data)), 1)
	return nil
}

// StoreLogs implements raft.LogStore.
func (s *countingLogStore) StoreLogs(ls []*raft.Log) error {
	if err := s.LogStore.StoreLogs(ls); err != nil {
		return err
	}
	var n int64
	for _, l := range ls {
		n += int64(len(l.Data))
	}
	s.add(n, int64(len(ls)))
	return nil
}

func (s *countingLogStore) add(bytes, entries int64) {
	s.entries.Add(entries)
	if s.bytes.Add(bytes) >= s.trigger {
		select {
		case s.due <- struct{}{}:
		default:
		}
	}
}

// minTrailingLogs is the fewest entries a byte-triggered snapshot leaves.
const minTrailingLogs = 64

// compactLog takes a snapshot whenever the entries stored since the last
// one pass Config.LogBytesSnapshot bytes, leaving about
// Config.TrailingLogBytes of them (TrailingLogs lowered for large
// entries, raised back to Config.TrailingLogs for small ones). Raft's own
// trigger counts entries only: with KV values of up to 1 MiB its 8192
// entries before a snapshot and 10240 kept after could fill gigabytes of
// disk in minutes. It ends when stopCh closes, closing done.
func (n *Node) compactLog(logs *countingLogStore, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-n.stopCh:
			return
		case <-logs.due:
		}
		bytes, entries := logs.bytes.Load(), logs.entries.Load()
		if bytes < logs.trigger || entries == 0 {
			continue
		}
		trailing := uint64(n.cfg.TrailingLogBytes / max(bytes/entries, 1))
		trailing = min(max(trailing, minTrailingLogs), n.cfg.TrailingLogs)
		rc := n.raft.ReloadableConfig()
		if rc.TrailingLogs != trailing {
			rc.TrailingLogs = trailing
			if err := n.raft.ReloadConfig(rc); err != nil {
				n.log.Warn("could not set how many log entries a snapshot keeps", "err", err)
			}
		}
		err := n.raft.Snapshot().Error()
		switch {
		case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot):
			logs.bytes.Add(-bytes)
			logs.entries.Add(-entries)
			n.log.Debug("raft log compacted by size", "bytes", bytes, "entries", entries, "trailing_logs", trailing)
		case errors.Is(err, raft.ErrRaftShutdown):
			return
		default:
			n.log.Warn("raft snapshot for the log's size failed; retrying in a second", "bytes_since_snapshot", bytes, "err", err)
			select {
			case <-n.stopCh:
				return
			case <-time.After(time.Second):
			}
		}
	}
}
