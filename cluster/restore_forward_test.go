package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// retryUnavailable calls restore until it succeeds or fails otherwise
// than as unavailable. A restore makes followers install a snapshot,
// which under load (2 vCPUs, -race) can keep them from answering the
// leader within FastConfig's 100 ms lease, so leadership may move
// mid-restore; restoring the same backup again is harmless.
func retryUnavailable(ctx context.Context, restore func() error) error {
	for {
		err := restore()
		if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return err
		}
	}
}

// A restore sent to a follower's admin API is streamed to the leader's
// peer API and answered with the leader's result once the follower has
// installed it: the disaster recovery of docs/operations.md (a backup
// restored into a new cluster) through whichever node the operator
// reaches, as `gojinn-node restore FILE` does. The module reaches the
// leader through the follower and every other node fetches it. A backup
// the leader refuses is 422 through the follower too, and a follower
// that knows no peer address for the leader answers 421 naming it.
func TestRestoreThroughFollower(t *testing.T) {
	ctx := testCtx(t)
	src := openStore(t, inmemConfig(t, t.TempDir()))
	mod := wat(t)
	sum := sha256.Sum256(mod)
	sha := hex.EncodeToString(sum[:])
	if _, err := src.Blobs().Put(sha, bytes.NewReader(mod), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Deploy(ctx, "restored", storage.Spec{SHA256: sha, Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/restored/*"}}}); err != nil {
		t.Fatal(err)
	}
	kv, err := src.KVPut(ctx, "app", "k", []byte("backed-up"), KVWriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := src.Backup(ctx, &backup, ConsistencyLinearizable); err != nil {
		t.Fatal(err)
	}

	h, leader, f := threeVoters(t)
	if _, err := leader.store.KVPut(ctx, "app", "gone", []byte("replaced by the restore"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	a := h.adminAPI(f, nil)
	unchanged := func(what string) {
		t.Helper()
		if _, err := leader.store.KVGet(ctx, "app", "gone", ConsistencyLinearizable); err != nil {
			t.Fatalf("after %s the cluster's own key is gone: %v", what, err)
		}
	}

	// No peer API address for the leader: forwarding is impossible.
	h.mu.Lock()
	h.cut[[2]int{f.i, leader.i}] = true
	h.mu.Unlock()
	err = a.client.Restore(ctx, bytes.NewReader(backup.Bytes()))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusMisdirectedRequest || ae.Code != CodeNotLeader || !strings.Contains(ae.Message, leader.store.node.ID()) {
		t.Fatalf("restore on a follower that cannot reach the leader's peer API: %v; want 421 %s naming the leader %s", err, CodeNotLeader, leader.store.node.ID())
	}
	unchanged("a refused restore")
	h.mu.Lock()
	delete(h.cut, [2]int{f.i, leader.i})
	h.mu.Unlock()

	// A damaged backup (cut in the middle of the module): the leader
	// refuses it, and the follower says why.
	// The module is the last entry: its data, padded to 512 bytes, then
	// two zero blocks.
	cut := backup.Len() - 1024 - (len(mod)+511)/512*512 + len(mod)/2
	err = a.client.Restore(ctx, bytes.NewReader(backup.Bytes()[:cut]))
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Code != CodeBadBackup {
		t.Fatalf("a damaged backup through a follower: %v; want 422 %s", err, CodeBadBackup)
	}
	unchanged("a damaged backup")

	// The leader's peer address is learnt while the restore waits for it
	// (as right after an election): the restore goes through.
	h.mu.Lock()
	h.cut[[2]int{f.i, leader.i}] = true
	h.mu.Unlock()
	uncut := time.AfterFunc(500*time.Millisecond, func() {
		h.mu.Lock()
		delete(h.cut, [2]int{f.i, leader.i})
		h.mu.Unlock()
	})
	defer uncut.Stop()
	if err := retryUnavailable(ctx, func() error { return a.client.Restore(ctx, bytes.NewReader(backup.Bytes())) }); err != nil {
		t.Fatalf("restore through a follower: %v", err)
	}
	restored := func(n *hnode) error {
		fn, ok := n.store.Function("restored")
		if !ok || fn.Active != 1 {
			return fmt.Errorf("function %+v, %v; want the restored one at version 1", fn, ok)
		}
		e, err := n.store.KVGet(ctx, "app", "k", ConsistencyLocal)
		if err != nil || string(e.Value) != "backed-up" || e.Version != kv {
			return fmt.Errorf("key k: %q version %d, %v; want %q version %d", e.Value, e.Version, err, "backed-up", kv)
		}
		if _, err := n.store.KVGet(ctx, "app", "gone", ConsistencyLocal); !errors.Is(err, storage.ErrKVNotFound) {
			return fmt.Errorf("the key written before the restore: %v; want it gone", err)
		}
		return nil
	}
	// The follower answered once it had installed the restore.
	if err := restored(f); err != nil {
		t.Fatalf("the follower that took the restore, right after its answer: %v", err)
	}
	for _, n := range h.nodes {
		var last error
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to install the restore", n.i), func() bool {
			last = restored(n)
			return last == nil
		})
	}
	h.servesEverywhere("restored", 1)
	for _, n := range h.nodes {
		if code, body := h.get(n, "/restored/x"); code != http.StatusOK {
			t.Fatalf("node %d answers the restored function's route with %d %q", n.i, code, body)
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// With no leader (two of three voters are down, so the election never
// ends) a restore sent to a follower waits for one, then fails as
// unavailable (503 with Retry-After: worth a retry), not 421, and reads
// none of the backup.
func TestRestoreOnFollowerDuringElection(t *testing.T) {
	ctx := testCtx(t)
	h, leader, f := threeVoters(t)
	var backup bytes.Buffer
	if err := leader.store.Backup(ctx, &backup, ConsistencyLinearizable); err != nil {
		t.Fatal(err)
	}
	for _, n := range h.nodes {
		if n != f {
			h.Kill(n.i)
		}
	}
	waitFor(t, 10*time.Second, "the survivor to know no leader", func() bool {
		return f.store.node.notLeader(false).LeaderID == ""
	})
	body := &countingReader{r: bytes.NewReader(backup.Bytes())}
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err := f.store.Restore(rctx, body)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRestoreOnLeader) {
		t.Fatalf("restore during an election: %v; want unavailable", err)
	}
	if ae := toAPIError(err); ae.Status != http.StatusServiceUnavailable || ae.RetryAfter == 0 {
		t.Fatalf("restore during an election answers %d (%s), retry after %v; want 503 with Retry-After", ae.Status, ae.Code, ae.RetryAfter)
	}
	if body.n != 0 {
		t.Fatalf("a restore that found no leader read %d bytes of the backup", body.n)
	}
}

// The follower a restore went through answers once it has installed it:
// a read on it right after shows the restored state, each time.
func TestRestoreThroughFollowerReadsItsOwnRestore(t *testing.T) {
	ctx := testCtx(t)
	_, leader, f := threeVoters(t)
	backups := make([][]byte, 2)
	for i := range backups {
		if _, err := leader.store.KVPut(ctx, "app", "k", []byte{byte('a' + i)}, KVWriteOptions{}); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := leader.store.Backup(ctx, &b, ConsistencyLinearizable); err != nil {
			t.Fatal(err)
		}
		backups[i] = b.Bytes()
	}
	for i := range 6 {
		want := []byte{byte('a' + i%2)}
		if err := retryUnavailable(ctx, func() error { return f.store.Restore(ctx, bytes.NewReader(backups[i%2])) }); err != nil {
			t.Fatalf("restore %d through a follower: %v", i, err)
		}
		if e, err := f.store.KVGet(ctx, "app", "k", ConsistencyLocal); err != nil || !bytes.Equal(e.Value, want) {
			t.Fatalf("restore %d: the follower it went through reads %q, %v right after; want the restored %q", i, e.Value, err, want)
		}
	}
}
