package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Index is the Raft index the backed-up state corresponds to: the
	// last command of any kind (registry or KV) it includes
	// (storage.State.Applied). Backups of older builds recorded the last
	// registry command's index; a restore only logs it.
	Index  uint64 `json:"index"`
	NodeID string `json:"node_id"`
	Blobs  int    `json:"blobs"`
	// StateSHA256 is the sha256 of registry.snapshot, checked by a
	// restore: the snapshot is JSON, which a flipped byte can change into
	// other valid JSON (a field name no decoder knows, a value). Backups
	// of older builds have none.
	StateSHA256 string `json:"state_sha256,omitempty"`
}

// Backup writes a backup of the registry, KV and every live module to w.
// With ConsistencyLinearizable (or "") it first catches this node up with
// the cluster (a barrier on the leader, a read index on a follower), so
// the backup holds every write committed before the call; without a
// leader it fails with ErrUnavailable before writing anything. With
// ConsistencyLocal it reads this node's state as it is, which may trail
// the leader: the way to back up a node whose cluster lost its quorum.
func (s *Store) Backup(ctx context.Context, w io.Writer, c Consistency) error {
	switch c {
	case "", ConsistencyLinearizable:
		if err := s.catchUp(ctx); err != nil {
			return fmt.Errorf("backup: catching up with the leader before reading the state: %w; "+
				"retry once the cluster has a leader, or back up this node's state as it is, which may miss recent writes (gojinn-node backup --local; GET /v1/backup?consistency=local)", err)
		}
	case ConsistencyLocal:
	default:
		_, err := ParseConsistency(string(c))
		return fmt.Errorf("backup: %w", err)
	}
	st := s.State()
	var state bytes.Buffer
	if err := st.Encode(&state); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	live := st.LiveBlobs()
	tw := tar.NewWriter(w)
	now := time.Now().UTC()
	stateSum := sha256.Sum256(state.Bytes())
	manifest, _ := json.Marshal(backupManifest{Format: backupFormat, Created: now, Index: st.Applied(), NodeID: s.node.ID(), Blobs: len(live),
		StateSHA256: hex.EncodeToString(stateSum[:])})
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
		rc, size, err := s.openBlob(ctx, sha)
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

// openBlob opens module sha from this node's blob store, first fetching
// it from a peer when this node does not have it yet: a follower fetches
// the module of a deploy it did not take in the background, so a backup
// right after the deploy can find it missing.
func (s *Store) openBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error) {
	rc, size, err := s.blobs.Open(sha)
	if !errors.Is(err, storage.ErrBlobNotFound) || s.peerClient == nil || s.peers == nil {
		return rc, size, err
	}
	pb := &PeerBlobs{Local: s.blobs, Node: s.node, Client: s.peerClient, Peers: s.peers}
	_, ferr := pb.askPeers(ctx, 2*time.Minute, func(ctx context.Context, url string) error {
		// A module the cluster accepted: no size limit beyond its hash.
		return s.peerClient.FetchBlob(ctx, url, sha, s.blobs, 0)
	})
	if ferr != nil {
		return nil, 0, fmt.Errorf("%w; no peer sent it either: %w", err, ferr)
	}
	return s.blobs.Open(sha)
}

// peerURLWait bounds how long a follower forwarding a restore waits to
// learn the leader's peer API address from gossip (right after an
// election, or a leader that just joined).
const peerURLWait = 3 * time.Second

// ErrRestoreOnLeader means a restore reached a follower that cannot
// forward it to the leader (it knows no peer API address for the leader,
// or forwarding is not enabled): retrying on the same node does not help.
// The message names the leader to send it to.
var ErrRestoreOnLeader = errors.New("restore runs on the leader only")

// Restore replaces the cluster's whole state (functions, versions, KV)
// with a backup written by Backup. It runs on the leader: a follower
// streams r to the leader's peer API (forwardRestore) and returns the
// leader's answer once it has installed the restore itself. Modules go
// into the leader's blob store (verified) and reach the others by the
// usual fetch. This is disaster recovery: every write since the backup is
// lost, so use it on a fresh or broken cluster.
func (s *Store) Restore(ctx context.Context, r io.Reader) error {
	if !s.node.IsLeader() {
		return s.forwardRestore(ctx, r)
	}
	_, err := s.restoreLocal(ctx, r)
	return err
}

// restoreLocal restores the backup read from r on this node, which must
// lead, and returns the Raft index the restored state sits at. It reads
// at most maxBackupState bytes of state; modules are verified by hash.
func (s *Store) restoreLocal(ctx context.Context, r io.Reader) (uint64, error) {
	tr := tar.NewReader(r)
	var manifest *backupManifest
	var state []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
		}
		// An archive unpacked and packed again by hand (tar cf x.tar
		// gojinn-backup.json registry.snapshot blobs, or tar -C dir .)
		// has directory entries and may name files "./...".
		if h.Typeflag == tar.TypeDir {
			continue
		}
		h.Name = strings.TrimPrefix(h.Name, "./")
		switch {
		case h.Name == backupManifestName:
			var m backupManifest
			if err := json.NewDecoder(io.LimitReader(tr, 64<<10)).Decode(&m); err != nil || m.Format != backupFormat {
				return 0, fmt.Errorf("restore: %w: manifest format %q, want %q", ErrBadBackup, m.Format, backupFormat)
			}
			manifest = &m
		case manifest == nil:
			return 0, fmt.Errorf("restore: %w: the first entry must be %s (got %q); to pack an unpacked backup again, name the manifest first: tar cf backup.tar %s %s blobs", ErrBadBackup, backupManifestName, h.Name, backupManifestName, backupStateName)
		case h.Name == backupStateName:
			if state, err = io.ReadAll(io.LimitReader(tr, maxBackupState+1)); err != nil {
				return 0, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
			}
			if len(state) > maxBackupState {
				return 0, fmt.Errorf("restore: %w: registry snapshot over %d bytes", ErrBadBackup, maxBackupState)
			}
		case strings.HasPrefix(h.Name, backupBlobPrefix):
			sha := strings.TrimPrefix(h.Name, backupBlobPrefix)
			if _, err := s.blobs.Put(sha, tr, 0); err != nil {
				if errors.Is(err, storage.ErrBlobStore) {
					// This node's disk, not the backup: a good backup must
					// not be called bad in the middle of a recovery.
					return 0, fmt.Errorf("restore: storing module %s on this node: %w; nothing was restored", sha, err)
				}
				return 0, fmt.Errorf("restore: %w: module %s: %w", ErrBadBackup, sha, err)
			}
		default:
			return 0, fmt.Errorf("restore: %w: unexpected entry %q", ErrBadBackup, h.Name)
		}
	}
	if manifest == nil || state == nil {
		return 0, fmt.Errorf("restore: %w: missing %s or %s", ErrBadBackup, backupManifestName, backupStateName)
	}
	if manifest.StateSHA256 == "" {
		s.node.log.Warn("restoring a backup without a checksum of its registry snapshot (made by an older build): damage to it cannot be detected")
	} else if sum := sha256.Sum256(state); hex.EncodeToString(sum[:]) != manifest.StateSHA256 {
		return 0, fmt.Errorf("restore: %w: %s does not match the checksum in %s (it hashes to %x, the backup recorded %s): the file is damaged; use another copy of the backup",
			ErrBadBackup, backupStateName, backupManifestName, sum, manifest.StateSHA256)
	}
	st, err := storage.DecodeState(bytes.NewReader(state))
	if err != nil {
		return 0, fmt.Errorf("restore: %w: %w", ErrBadBackup, err)
	}
	for sha := range st.LiveBlobs() {
		if !s.blobs.Has(sha) {
			return 0, fmt.Errorf("restore: %w: module %s named by a version is not in the backup", ErrBadBackup, sha)
		}
	}
	snap, err := newRestoreSnapshot(st, s.node.raft.LastIndex)
	if err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	// Raft writes the snapshot at max(meta.Index, its last index) + 1,
	// leaving a hole in the log, and new entries follow it.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: snap.base, Size: snap.size}
	if err := s.node.raft.Restore(meta, snap, s.node.timeout(ctx)); err != nil {
		return 0, fmt.Errorf("restore: %w", s.node.applyError(err))
	}
	if got := s.node.raft.Stats()["last_snapshot_index"]; got != strconv.FormatUint(snap.at, 10) {
		// raft changed how it picks the index (see restoreSnapshot).
		s.node.log.Warn("raft restored the backup at another index than the state records; linearizable reads right after the restore may miss a few writes",
			"raft_index", got, "state_index", snap.at)
	}
	s.node.log.Warn("state restored from a backup", "backup_index", manifest.Index, "backup_created", manifest.Created,
		"functions", st.Len(), "restore_index", snap.at)
	return snap.at, nil
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

// Forwarded restores: a follower streams the backup to the leader's peer
// API (POST /peer/v1/restore, authenticated like every peer call) as it
// reads it, without holding it, and the leader restores it with the same
// bounds as a restore sent to it directly (restoreLocal). The follower
// waits for a leader first: the body is not consumed until a leader is
// known, so an election costs latency, like a forwarded write; once the
// stream has started there is no retry (the body is gone), and every
// failure goes back to the caller.

// maxRestoreForward bounds a forwarded restore, from the first byte sent
// to the leader's answer. It replaces the peer client's own timeout,
// which fits writes and module fetches, not a large backup; the admin
// API's server bounds the request that carries the backup anyway.
const maxRestoreForward = 15 * time.Minute

// restoreDrainLimit is how much of a refused backup the leader still
// reads before answering, so the follower, which is still sending, reads
// the answer instead of a reset connection.
const restoreDrainLimit = 64 << 20

// restoreResponse is the leader's answer to /peer/v1/restore.
type restoreResponse struct {
	// Index is the Raft index the restored state sits at.
	Index uint64 `json:"index"`
}

// forwardRestore sends the restore read from r to the leader. It waits
// for a leader up to ctx's deadline or the node's ApplyTimeout (then
// ErrUnavailable, worth a retry), and tries again in that time while an
// attempt failed without reading any of r (a leader that just died);
// it restores locally when this node wins an election meanwhile, and
// fails with ErrRestoreOnLeader when the leader cannot be reached through
// the peer API at all. After a success it waits until this node has
// installed the restore, so its reads show the restored state.
func (s *Store) forwardRestore(ctx context.Context, r io.Reader) error {
	wctx, wcancel := context.WithTimeout(ctx, s.node.timeout(ctx))
	defer wcancel()
	var urlWait time.Time // until when a missing leader URL is waited for
	for {
		nl, err := s.awaitLeader(wctx)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if nl == nil {
			_, err := s.restoreLocal(ctx, r)
			return err
		}
		url, ok := "", false
		if s.peerClient != nil && s.peers != nil {
			url, ok = s.peers.PeerURL(nl.LeaderID)
		}
		if !ok {
			// Right after an election gossip may not have told this node
			// the new leader's peer address yet: wait a little for it.
			if urlWait.IsZero() {
				urlWait = time.Now().Add(peerURLWait)
			}
			if time.Now().Before(urlWait) {
				select {
				case <-time.After(retryBackoff):
					continue
				case <-wctx.Done():
				}
			}
			return fmt.Errorf("%w: this node is a follower and knows no peer API address for the leader, node %s (Raft address %s), to forward the restore to: send it to the leader's admin API (`gojinn-node restore FILE --addr` its admin address)",
				ErrRestoreOnLeader, nl.LeaderID, nl.LeaderAddr)
		}
		index, read, err := s.forwardRestoreTo(ctx, url, r)
		if err == nil {
			s.awaitLocal(ctx, index, "op", "restore")
			return nil
		}
		err = fmt.Errorf("restore: forwarded to the leader, node %s: %w", nl.LeaderID, err)
		if errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrUnavailable) {
			// The peer lost leadership: an election, worth a retry.
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if read > 0 || outcomeUnknown(err) || !errors.Is(err, ErrUnavailable) {
			return err // the backup is (partly) consumed: only the caller can send it again
		}
		select {
		case <-wctx.Done():
			return err
		case <-time.After(retryBackoff):
		}
	}
}

// forwardRestoreTo makes one attempt at sending the restore to the peer
// API at url, and says how many bytes of r it read.
func (s *Store) forwardRestoreTo(ctx context.Context, url string, r io.Reader) (index uint64, read int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, maxRestoreForward)
	defer cancel()
	body := &stopReader{r: r}
	index, err = s.peerClient.Restore(ctx, url, body)
	// The transport may still be reading the body after an early answer:
	// from here on it reads nothing of r, which the caller owns again.
	return index, body.stop(), err
}

// awaitLeader returns the leader to forward to (nil when this node leads),
// waiting through an election until ctx ends.
func (s *Store) awaitLeader(ctx context.Context) (*NotLeaderError, error) {
	for {
		if s.node.IsLeader() {
			return nil, nil
		}
		nl := s.node.notLeader(false)
		if nl.LeaderID != "" && nl.LeaderID != s.node.ID() {
			return nl, nil
		}
		if s.node.isClosed() {
			return nil, errNodeClosed
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader was elected in time: %w", nl)
		case <-time.After(retryBackoff):
		}
	}
}

// restore answers a restore a follower forwarded. Only the leader takes
// it, and it never forwards it again: another node answers not_leader
// (503), and the follower hands that to its caller.
func (p *peerAPI) restore(w http.ResponseWriter, r *http.Request) {
	st := p.cfg.Store
	if !st.node.IsLeader() {
		p.fail(w, st.node.notLeader(false))
		return
	}
	index, err := st.restoreLocal(r.Context(), r.Body)
	if err != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, restoreDrainLimit))
		p.log.Warn("a restore forwarded by a follower failed", "remote", r.RemoteAddr, "err", err)
		if errors.Is(err, ErrBadBackup) {
			peerError(w, http.StatusUnprocessableEntity, "bad_backup", err.Error())
			return
		}
		p.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, restoreResponse{Index: index})
}

// Restore streams a backup to the leader at base and returns the Raft
// index the leader restored it at. It is not bounded by c.HTTP's Timeout
// (a backup may take longer to send than a write), only by ctx. An error
// matching ErrUnknownOutcome means the whole backup was sent and the
// answer was lost: the restore may have been applied.
func (c *PeerClient) Restore(ctx context.Context, base string, backup io.Reader) (uint64, error) {
	hc := *c.HTTP
	hc.Timeout = 0
	stream := &PeerClient{HTTP: &hc, Secret: c.Secret}
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				sent.Store(true)
			}
		},
	})
	resp, err := stream.do(ctx, "POST", base+"/peer/v1/restore", backup)
	var na *noAnswerError
	if errors.As(err, &na) && sent.Load() {
		return 0, unknownOutcome(err)
	}
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out restoreResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return 0, unknownOutcome(fmt.Errorf("peer %s: decode restore answer: %w", base, err))
	}
	return out.Index, nil
}

// errRestoreForwarded is what the transport reads from a forwarded
// restore's body once forwardRestore returned.
var errRestoreForwarded = errors.New("restore: the forwarded request already ended")

// stopReader passes reads to r until stop, and fails them after, so a
// transport still sending a request body never reads it once its owner
// has moved on. Reads and stop are serialized: stop waits for a read in
// progress, and returns how many bytes were read.
type stopReader struct {
	mu      sync.Mutex
	r       io.Reader
	n       int64
	stopped bool
}

func (s *stopReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return 0, errRestoreForwarded
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

func (s *stopReader) stop() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	return s.n
}
