package cluster

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gojinn/gojinn/storage"
)

// rewriteEntry returns backup with the body of entry name passed through
// fn, the tar otherwise as it was.
func rewriteEntry(t *testing.T, backup []byte, name string, fn func([]byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	found := false
	for _, e := range readTar(t, backup) {
		if e.h.Name == name {
			e.body, found = fn(e.body), true
		}
		writeTarEntry(t, tw, e)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("no entry %s in the backup", name)
	}
	return out.Bytes()
}

// A registry snapshot changed inside a backup into other valid JSON (a
// flipped byte in a name) is refused by its checksum: it was restored,
// the changed data silently lost. A module that cannot be written to this
// node's disk fails the restore as this node's problem, not as a bad
// backup. Neither changes the node's state.
func TestRestoreRefusesDamageAndNamesDiskFailures(t *testing.T) {
	ctx := testCtx(t)
	src := openStore(t, inmemConfig(t, t.TempDir()))
	if _, err := src.KVPut(ctx, "app", "k", []byte("kept"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	mod := wat(t)
	sha, _, err := src.Blobs().Add(bytes.NewReader(mod), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Deploy(ctx, "fn", storage.Spec{SHA256: sha, Mode: storage.ModePooled}); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := src.Backup(ctx, &backup, ConsistencyLinearizable); err != nil {
		t.Fatal(err)
	}

	dstDir := t.TempDir()
	dst := openStore(t, inmemConfig(t, dstDir))
	if _, err := dst.KVPut(ctx, "app", "k", []byte("before"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	flipped := rewriteEntry(t, backup.Bytes(), backupStateName, func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"app"`), []byte(`"apq"`), 1)
	})
	err = dst.Restore(ctx, bytes.NewReader(flipped))
	if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "does not match the checksum") {
		t.Fatalf("a changed registry snapshot: %v; want ErrBadBackup naming the checksum", err)
	}

	// blobs/tmp gone (a dangling symlink): writing a module fails as a
	// full disk's would.
	tmp := filepath.Join(dstDir, "blobs", "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dstDir, "gone"), tmp); err != nil {
		t.Fatal(err)
	}
	err = dst.Restore(ctx, bytes.NewReader(backup.Bytes()))
	if err == nil || errors.Is(err, ErrBadBackup) || !errors.Is(err, storage.ErrBlobStore) || !strings.Contains(err.Error(), "on this node") {
		t.Fatalf("a restore whose modules cannot be written: %v; want this node's blob store named, not a bad backup", err)
	}
	if e, err := dst.KVGet(ctx, "app", "k", ConsistencyLinearizable); err != nil || string(e.Value) != "before" {
		t.Fatalf("after the refused restores: %q, %v; want the state before them", e.Value, err)
	}
}
