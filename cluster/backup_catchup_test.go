package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// readBackup returns a backup's manifest and state, and checks that it
// holds every module its state names.
func readBackup(t *testing.T, b []byte) (backupManifest, *storage.State) {
	t.Helper()
	var m backupManifest
	var st *storage.State
	blobs := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the backup: %v", err)
		}
		switch h.Name {
		case backupManifestName:
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatalf("backup manifest: %v", err)
			}
		case backupStateName:
			if st, err = storage.DecodeState(tr); err != nil {
				t.Fatalf("backup state: %v", err)
			}
		default:
			blobs[strings.TrimPrefix(h.Name, backupBlobPrefix)] = true
		}
	}
	if m.Format != backupFormat || st == nil {
		t.Fatalf("the backup lacks a manifest (%+v) or a state", m)
	}
	for sha := range st.LiveBlobs() {
		if !blobs[sha] {
			t.Fatalf("the backup lacks module %s, which a version names", sha)
		}
	}
	return m, st
}

// A backup through a follower holds every write committed before it
// started: a KV write made through that follower (forwarded to the
// leader), and a deploy and a KV write made through the leader that the
// follower has not applied yet (the backup first catches up through a
// read index, and fetches the module the follower has not yet). Its
// manifest records the Raft index of the state it holds (here a KV
// write's, above the last deploy's), not the registry's. Through the
// Store and the admin API.
func TestBackupThroughFollowerHoldsEarlierWrites(t *testing.T) {
	ctx := testCtx(t)
	h, leader, f := threeVoters(t)
	a := h.adminAPI(f, nil)
	for i := range 12 {
		viaF := fmt.Sprintf("via-follower-%d", i)
		vf, err := f.store.KVPut(ctx, "app", viaF, []byte("f"), KVWriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The module is on the leader only.
		fn, err := leader.store.Deploy(ctx, "fn", putModule(t, leader.store, fmt.Sprintf("fn-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		viaL := fmt.Sprintf("via-leader-%d", i)
		vl, err := leader.store.KVPut(ctx, "app", viaL, []byte("l"), KVWriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if i%2 == 0 {
			err = f.store.Backup(ctx, &b, ConsistencyLinearizable)
		} else {
			err = a.client.Backup(ctx, &b)
		}
		if err != nil {
			t.Fatalf("backup %d through a follower: %v", i, err)
		}
		m, st := readBackup(t, b.Bytes())
		for key, want := range map[string]uint64{viaF: vf, viaL: vl} {
			if e, err := st.KVGet("app", key, time.Now()); err != nil || e.Version != want {
				t.Fatalf("backup %d through a follower right after the write of %s (version %d): %v, version %d", i, key, want, err, e.Version)
			}
		}
		if got, ok := st.Function("fn"); !ok || got.Active != fn.Version {
			t.Fatalf("backup %d through a follower right after deploying version %d has %+v", i, fn.Version, got)
		}
		if m.Index != st.Applied() || m.Index < vl || m.Index <= st.Index() {
			t.Fatalf("backup %d: manifest index %d; want the state's applied index %d, at least the last write's %d (the registry's index is %d)",
				i, m.Index, st.Applied(), vl, st.Index())
		}
	}
}

// hastyBackup gives its Store's backups a short deadline.
type hastyBackup struct{ *Store }

func (b hastyBackup) Backup(ctx context.Context, w io.Writer, c Consistency) error {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	return b.Store.Backup(ctx, w, c)
}

// Without a leader (two of three voters are down) a backup cannot catch
// up: the API answers 503 unavailable, a JSON error and not a truncated
// tar, and names consistency=local, which backs up the node's state as it
// is (the way to save what a cluster that lost its quorum holds).
func TestBackupWithoutLeader(t *testing.T) {
	ctx := testCtx(t)
	h, _, f := threeVoters(t)
	v, err := f.store.KVPut(ctx, "app", "k", []byte("v"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range h.nodes {
		if n != f {
			h.Kill(n.i)
		}
	}
	a := h.adminAPI(f, func(c *APIConfig) { c.Registry = hastyBackup{f.store} })
	var b bytes.Buffer
	err = a.client.Backup(ctx, &b)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != CodeUnavailable || !bytes.Contains([]byte(ae.Message), []byte("consistency=local")) ||
		!bytes.Contains([]byte(ae.Message), []byte("gojinn-node backup --local")) || bytes.Contains([]byte(ae.Message), []byte("cannot take writes")) {
		t.Fatalf("backup without a leader: %v; want 503 %s naming consistency=local and gojinn-node backup --local, and not calling the backup a write", err, CodeUnavailable)
	}
	if b.Len() != 0 {
		t.Fatalf("a failed backup wrote %d bytes", b.Len())
	}

	b.Reset()
	if err := a.client.BackupLocal(ctx, &b); err != nil {
		t.Fatalf("local backup without a leader: %v", err)
	}
	if _, st := readBackup(t, b.Bytes()); st.Applied() < v {
		t.Fatalf("the local backup's state is at index %d, before the write %d this node applied", st.Applied(), v)
	}
}

// brokenBackup writes the start of a backup, then fails.
type brokenBackup struct{ *Store }

func (b brokenBackup) Backup(_ context.Context, w io.Writer, _ Consistency) error {
	// More than the server buffers, so the 200 and the start of the
	// stream are out before the failure, as with a real backup.
	if _, err := w.Write(make([]byte, 256<<10)); err != nil {
		return err
	}
	return errors.New("the disk failed")
}

// A backup that fails after its answer started must fail the client's
// read, not end as a shorter stream the client takes for a whole backup.
func TestBackupFailingMidStreamFailsTheClient(t *testing.T) {
	ctx := testCtx(t)
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, func(c *APIConfig) { c.Registry = brokenBackup{n.store} })
	var b bytes.Buffer
	err := a.client.Backup(ctx, &b)
	if err == nil {
		t.Fatalf("a backup that failed mid-stream reached the client as %d bytes and no error", b.Len())
	}
	if !strings.Contains(err.Error(), "the node's stream ended early") || !strings.Contains(err.Error(), "the node's log says why") {
		t.Fatalf("a backup that failed mid-stream: %v; want the client to say the stream ended and where the reason is", err)
	}
}

// An unknown consistency is refused naming what a backup takes (the
// KV endpoints' message called "local" the default, which a backup's is
// not).
func TestBackupConsistencyRefused(t *testing.T) {
	h := newHarness(t, false)
	n := h.Start(true)
	h.waitLeader()
	a := h.adminAPI(n, nil)
	r := a.doJSON("GET", "/v1/backup?consistency=bogus", "")
	e := r.apiErr(t)
	if r.status != http.StatusBadRequest || e.Code != CodeInvalid || !strings.Contains(e.Message, `"linearizable" (the default`) {
		t.Fatalf("%d %+v; want 400 %s naming linearizable as the default", r.status, e, CodeInvalid)
	}
}
