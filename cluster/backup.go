package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gojinn/gojinn/storage"
	"github.com/hashicorp/raft"
)

// A backup is a tar stream: "gojinn-backup.json" (format, time, index),
// "registry.snapshot" (the state machine's snapshot: functions, versions,
// KV) and "blobs/<sha256>" for every module a version names. It restores
// into a fresh node or cluster (disaster recovery).

const (
	backupFormat       = "gojinn-backup/1"
	backupManifestName = "gojinn-backup.json"
	backupStateName    = "registry.snapshot"
	backupBlobPrefix   = "blobs/"
	// maxBackupState bounds the registry snapshot read into memory.
	maxBackupState = 1 << 30
)

// ErrBadBackup means a restore's input is not a Gojinn backup or is
// damaged.
var ErrBadBackup = errors.New("not a valid gojinn backup")

type backupManifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	Index   uint64    `json:"index"`
	NodeID  string    `json:"node_id"`
	Blobs   int       `json:"blobs"`
}

// Backup writes a consistent backup of this node's registry, KV and every
// live module to w. It reads local state: take it from the leader (or
// after a linearizable read) for the latest writes.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	st := s.State()
	var state bytes.Buffer
	if err := st.Encode(&state); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	live := st.LiveBlobs()
	tw := tar.NewWriter(w)
	now := time.Now().UTC()
	manifest, _ := json.Marshal(backupManifest{Format: backupFormat, Created: now, Index: st.Index(), NodeID: s.node.ID(), Blobs: len(live)})
	file := func(name string, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, body)
		return err
	}
	if err := file(backupManifestName, int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := file(backupStateName, int64(state.Len()), &state); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	for sha := range live {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		rc, size, err := s.blobs.Open(sha)
		if err != nil {
			return fmt.Errorf("backup: module %s: %w", sha, err)
		}
		err = file(backupBlobPrefix+sha, size, rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("backup: module %s: %w", sha, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// ErrRestoreOnLeader means a restore reached a follower: it runs on the
// leader only and is not forwarded (it streams the whole backup), so
// retrying on the same node never helps. The message names the leader.
var ErrRestoreOnLeader = errors.New("restore runs on the leader only")

// Restore replaces the cluster's whole state (functions, versions, KV)
// with a backup written by Backup. It runs on the leader only; modules go
// into this node's blob store (verified) and reach the others by the
// usual fetch. This is disaster recovery: every write since the backup is
// lost, so use it on a fresh or broken cluster.
func (s *Store) Restore(ctx context.Context, r io.Reader) error {
	if !s.node.IsLeader() {
		nl := s.node.notLeader(false)
		if nl.LeaderID == "" {
			// An election: retrying soon helps.
			return fmt.Errorf("restore: %w", nl)
		}
		where := "Raft address " + nl.LeaderAddr
		if s.peers != nil {
			if u, ok := s.peers.PeerURL(nl.LeaderID); ok {
				where = "peer API " + u
			}
		}
		return fmt.Errorf("%w: this node is a follower; the leader is node %s (%s): send the restore to that node's admin API (`gojinn-node restore FILE --addr` its admin address)",
			ErrRestoreOnLeader, nl.LeaderID, where)
	}
	tr := tar.NewReader(r)
	var manifest *backupManifest
	var state []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
		}
		switch {
		case h.Name == backupManifestName:
			var m backupManifest
			if err := json.NewDecoder(io.LimitReader(tr, 64<<10)).Decode(&m); err != nil || m.Format != backupFormat {
				return fmt.Errorf("restore: %w: manifest format %q, want %q", ErrBadBackup, m.Format, backupFormat)
			}
			manifest = &m
		case manifest == nil:
			return fmt.Errorf("restore: %w: the first entry must be %s (got %q)", ErrBadBackup, backupManifestName, h.Name)
		case h.Name == backupStateName:
			if state, err = io.ReadAll(io.LimitReader(tr, maxBackupState+1)); err != nil {
				return fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
			}
			if len(state) > maxBackupState {
				return fmt.Errorf("restore: %w: registry snapshot over %d bytes", ErrBadBackup, maxBackupState)
			}
		case strings.HasPrefix(h.Name, backupBlobPrefix):
			sha := strings.TrimPrefix(h.Name, backupBlobPrefix)
			if _, err := s.blobs.Put(sha, tr, 0); err != nil {
				return fmt.Errorf("restore: %w: module %s: %w", ErrBadBackup, sha, err)
			}
		default:
			return fmt.Errorf("restore: %w: unexpected entry %q", ErrBadBackup, h.Name)
		}
	}
	if manifest == nil || state == nil {
		return fmt.Errorf("restore: %w: missing %s or %s", ErrBadBackup, backupManifestName, backupStateName)
	}
	st, err := storage.DecodeState(bytes.NewReader(state))
	if err != nil {
		return fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
	}
	for sha := range st.LiveBlobs() {
		if !s.blobs.Has(sha) {
			return fmt.Errorf("restore: %w: module %s named by a version is not in the backup", ErrBadBackup, sha)
		}
	}
	snap, err := newRestoreSnapshot(st, s.node.raft.LastIndex)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// Raft writes the snapshot at max(meta.Index, its last index) + 1,
	// leaving a hole in the log, and new entries follow it.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: snap.base, Size: snap.size}
	if err := s.node.raft.Restore(meta, snap, s.node.timeout(ctx)); err != nil {
		return fmt.Errorf("restore: %w", s.node.applyError(err))
	}
	if got := s.node.raft.Stats()["last_snapshot_index"]; got != strconv.FormatUint(snap.at, 10) {
		// raft changed how it picks the index (see restoreSnapshot).
		s.node.log.Warn("raft restored the backup at another index than the state records; linearizable reads right after the restore may miss a few writes",
			"raft_index", got, "state_index", snap.at)
	}
	s.node.log.Warn("state restored from a backup", "backup_index", manifest.Index, "backup_created", manifest.Created,
		"functions", st.Len(), "restore_index", snap.at)
	return nil
}

// restoreSnapshot is the snapshot a restore hands to raft: the backup's
// state placed at the Raft index raft restores it at (State.RestoredAt).
//
// The backup's indexes (Applied, KV versions) come from the source
// cluster's log. Restored as they are into a younger log, new writes got
// versions below restored ones (a compare-and-set could match an older
// write) and Applied stayed above every new index (a follower's read
// index was met at once: stale linearizable reads). So meta.Index is at
// least the state's highest index, which puts every later entry above it,
// and the state's Index and Applied become the restore index itself, so
// a follower that has not installed the restore yet (Applied below it)
// waits for it.
//
// raft (v1.7) picks the index as max(meta.Index, LastIndex()) + 1 on its
// main goroutine and copies this reader right after, before it appends
// anything else, so the first Read computes the same value. The size
// raft must be told up front is that of the state at the largest
// possible index; a shorter encoding is padded with newlines, which
// DecodeState skips.
type restoreSnapshot struct {
	st   *storage.State
	last func() uint64 // raft's LastIndex
	base uint64        // meta.Index
	size int64         // meta.Size
	at   uint64        // the restore index, set by the first Read
	buf  *bytes.Reader
	err  error
}

func newRestoreSnapshot(st *storage.State, last func() uint64) (*restoreSnapshot, error) {
	r := &restoreSnapshot{st: st, last: last, base: max(st.MaxIndex(), last())}
	widest, err := st.RestoredAt(math.MaxUint64)
	if err != nil {
		return nil, err
	}
	var n countWriter
	if err := widest.Encode(&n); err != nil {
		return nil, err
	}
	r.size = int64(n)
	return r, nil
}

func (r *restoreSnapshot) Read(p []byte) (int, error) {
	if r.buf == nil && r.err == nil {
		r.err = r.encode()
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.buf.Read(p)
}

func (r *restoreSnapshot) encode() error {
	r.at = max(r.base, r.last()) + 1
	st, err := r.st.RestoredAt(r.at)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.Grow(int(r.size))
	if err := st.Encode(&b); err != nil {
		return err
	}
	if int64(b.Len()) > r.size {
		return fmt.Errorf("restore: the state at index %d encodes to %d bytes, over the %d announced", r.at, b.Len(), r.size)
	}
	b.Write(bytes.Repeat([]byte{'\n'}, int(r.size)-b.Len()))
	r.buf = bytes.NewReader(b.Bytes())
	return nil
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
