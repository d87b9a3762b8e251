package cluster

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// tarEntry is one file of a backup as the tests rewrite it.
type tarEntry struct {
	h    *tar.Header
	body []byte
}

// readTar returns backup's entries in order.
func readTar(t *testing.T, backup []byte) []tarEntry {
	t.Helper()
	var entries []tarEntry
	tr := tar.NewReader(bytes.NewReader(backup))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, tarEntry{h, b})
	}
}

// writeTarEntry adds e to tw, its size set from its body.
func writeTarEntry(t *testing.T, tw *tar.Writer, e tarEntry) {
	t.Helper()
	h := *e.h
	h.Size = int64(len(e.body))
	if err := tw.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(e.body); err != nil {
		t.Fatal(err)
	}
}

// repack rewrites a backup as an operator's tar would after unpacking
// it: directory entries, names under "./", in the order given by first.
func repack(t *testing.T, backup []byte, dirs bool, first ...string) []byte {
	t.Helper()
	entries := readTar(t, backup)
	rank := func(name string) int {
		for i, f := range first {
			if strings.HasPrefix(name, f) {
				return i
			}
		}
		return len(first)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for r := 0; r <= len(first); r++ {
		if dirs && r == 0 {
			for _, d := range []string{"./", "./" + backupBlobPrefix} { // blobs/ even when empty, as tar writes it
				if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, e := range entries {
			if rank(e.h.Name) != r {
				continue
			}
			h := *e.h
			h.Name = "./" + h.Name
			writeTarEntry(t, tw, tarEntry{&h, e.body})
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A backup unpacked and packed again by hand restores: directory entries
// are skipped and "./" names read as the plain ones (they were refused as
// a module with an empty hash). One packed with the manifest elsewhere
// than first is refused with the tar command that packs it right.
func TestRestoreRepackedBackup(t *testing.T) {
	ctx := testCtx(t)
	src := openStore(t, inmemConfig(t, t.TempDir()))
	if _, err := src.KVPut(ctx, "app", "k", []byte("kept"), KVWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if err := src.Backup(ctx, &backup, ConsistencyLinearizable); err != nil {
		t.Fatal(err)
	}

	misordered := repack(t, backup.Bytes(), false, backupStateName, backupManifestName)
	dst := openStore(t, inmemConfig(t, t.TempDir()))
	err := dst.Restore(ctx, bytes.NewReader(misordered))
	if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "tar cf backup.tar gojinn-backup.json registry.snapshot blobs") {
		t.Fatalf("a backup packed with the manifest second: %v; want ErrBadBackup with the tar command", err)
	}

	repacked := repack(t, backup.Bytes(), true, backupManifestName, backupStateName, backupBlobPrefix)
	if err := dst.Restore(ctx, bytes.NewReader(repacked)); err != nil {
		t.Fatalf("a backup unpacked and packed again: %v", err)
	}
	if e, err := dst.KVGet(ctx, "app", "k", ConsistencyLinearizable); err != nil || string(e.Value) != "kept" {
		t.Fatalf("after restoring the repacked backup: %q, %v", e.Value, err)
	}
}
