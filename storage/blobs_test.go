package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func openBlobs(t *testing.T) (*Blobs, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := OpenBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, dir
}

// tmpEmpty fails the test if a temporary file was left behind.
func tmpEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(filepath.Join(dir, "blobs", "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// ReadBlob (the reconciler's cluster.BlobReader) reads like ReadAll, and
// a read whose context has ended does not start.
func TestBlobsReadBlob(t *testing.T) {
	b, _ := openBlobs(t)
	data := []byte("\x00asm\x01\x00\x00\x00 read with a context")
	sha := shaOf(data)
	if _, err := b.ReadBlob(t.Context(), sha); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("ReadBlob of a missing blob: %v", err)
	}
	if _, err := b.Put(sha, bytes.NewReader(data), 1<<20); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ReadBlob(t.Context(), sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got, err := b.ReadBlob(ctx, sha); !errors.Is(err, context.Canceled) || got != nil {
		t.Fatalf("ReadBlob with an ended context = %q, %v; want context.Canceled", got, err)
	}
}

func TestBlobsPutGet(t *testing.T) {
	b, dir := openBlobs(t)
	data := []byte("\x00asm\x01\x00\x00\x00 module bytes")
	sha := shaOf(data)
	if b.Has(sha) {
		t.Fatal("Has before Put")
	}
	n, err := b.Put(sha, bytes.NewReader(data), 1<<20)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Put = %d, %v", n, err)
	}
	if !b.Has(sha) {
		t.Fatal("Has after Put = false")
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", sha[:2], sha)); err != nil {
		t.Fatalf("blob not at its content address: %v", err)
	}
	got, err := b.ReadAll(sha)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if size, err := b.Stat(sha); err != nil || size != int64(len(data)) {
		t.Fatalf("Stat = %d, %v", size, err)
	}
	rc, size, err := b.Open(sha)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Open = %d, %v", size, err)
	}
	streamed, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(streamed, data) {
		t.Fatalf("Open read = %q, %v", streamed, err)
	}
	// Putting the same bytes again is fine and reads them all.
	if n, err := b.Put(sha, bytes.NewReader(data), 0); err != nil || n != int64(len(data)) {
		t.Fatalf("second Put = %d, %v", n, err)
	}
	tmpEmpty(t, dir)

	list, err := b.List()
	if err != nil || len(list) != 1 || list[0] != sha {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := b.Delete(sha); err != nil {
		t.Fatal(err)
	}
	if b.Has(sha) {
		t.Fatal("Has after Delete")
	}
	if err := b.Delete(sha); err != nil {
		t.Fatalf("Delete of a missing blob: %v", err)
	}
	if _, err := b.ReadAll(sha); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("ReadAll after Delete: %v, want ErrBlobNotFound", err)
	}
	if _, err := b.Stat(sha); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("Stat after Delete: %v, want ErrBlobNotFound", err)
	}
}

func TestBlobsAdd(t *testing.T) {
	b, dir := openBlobs(t)
	data := []byte("unknown hash")
	sha, n, err := b.Add(bytes.NewReader(data), 0)
	if err != nil || sha != shaOf(data) || n != int64(len(data)) {
		t.Fatalf("Add = %s, %d, %v", sha, n, err)
	}
	if !b.Has(sha) {
		t.Fatal("Has after Add = false")
	}
	if _, _, err := b.Add(bytes.NewReader(make([]byte, 100)), 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Add over the limit: %v, want ErrTooLarge", err)
	}
	tmpEmpty(t, dir)
}

// The blob store is private to the node's user: directories 0700, files
// 0600, so a copy of the data directory is private too.
func TestBlobsFilesPrivate(t *testing.T) {
	b, dir := openBlobs(t)
	if _, _, err := b.Add(strings.NewReader("module bytes"), 0); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil || files != 1 {
		t.Fatalf("walk: %d files, %v", files, err)
	}
}

func TestBlobsHashMismatch(t *testing.T) {
	b, dir := openBlobs(t)
	claimed := shaOf([]byte("what the client said"))
	_, err := b.Put(claimed, strings.NewReader("what the client sent"), 0)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Put with a wrong hash: %v, want ErrHashMismatch", err)
	}
	if b.Has(claimed) {
		t.Fatal("mismatched blob was stored")
	}
	tmpEmpty(t, dir)
	if list, _ := b.List(); len(list) != 0 {
		t.Fatalf("List after a mismatch = %v", list)
	}

	// A mismatch against an already stored blob is reported too, and
	// leaves the stored copy alone.
	data := []byte("stored")
	sha := shaOf(data)
	if _, err := b.Put(sha, bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(sha, strings.NewReader("other"), 0); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Put of other bytes under a stored hash: %v, want ErrHashMismatch", err)
	}
	if got, err := b.ReadAll(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored blob changed: %q, %v", got, err)
	}
}

func TestBlobsTooLarge(t *testing.T) {
	b, dir := openBlobs(t)
	data := bytes.Repeat([]byte{7}, 1000)
	sha := shaOf(data)
	if _, err := b.Put(sha, bytes.NewReader(data), 999); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put over the limit: %v, want ErrTooLarge", err)
	}
	if b.Has(sha) {
		t.Fatal("oversized blob was stored")
	}
	tmpEmpty(t, dir)
	if _, err := b.Put(sha, bytes.NewReader(data), 1000); err != nil {
		t.Fatalf("Put at exactly the limit: %v", err)
	}
}

func TestBlobsCorruption(t *testing.T) {
	b, dir := openBlobs(t)
	data := bytes.Repeat([]byte("module"), 1000)
	sha := shaOf(data)
	if _, err := b.Put(sha, bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "blobs", "sha256", sha[:2], sha)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := b.ReadAll(sha)
	if !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "was corrupt") || !strings.Contains(err.Error(), "moved to "+filepath.Join(dir, "blobs", "corrupt")) {
		t.Fatalf("ReadAll of a corrupted blob: %v, want a corrupt ErrHashMismatch saying where it was moved", err)
	}
	// Moved aside: the store no longer has it, so an upload of the module
	// (a redeploy, which asks HasBlob first) or a peer fetch replaces it.
	if b.Has(sha) {
		t.Fatal("a blob that failed its hash is still in the store")
	}
	if aside, _ := os.ReadDir(filepath.Join(dir, "blobs", "corrupt")); len(aside) != 1 {
		t.Fatalf("blobs/corrupt holds %d files, want the corrupt one", len(aside))
	}
	if _, err := b.ReadAll(sha); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("ReadAll after the corrupt blob was moved aside: %v, want ErrBlobNotFound", err)
	}
	repair := func() {
		t.Helper()
		if _, err := b.Put(sha, bytes.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
		if got, err := b.ReadAll(sha); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after a repairing Put: %d bytes, %v", len(got), err)
		}
	}
	repair()

	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Open(sha)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("streaming a corrupted blob: %v, want ErrHashMismatch", err)
	}
	// The error sticks.
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Read after the end: %v", err)
	}
	repair()
	// Truncation is corruption too.
	if err := os.WriteFile(path, data[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAll(sha); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("ReadAll of a truncated blob: %v, want ErrHashMismatch", err)
	}
	repair()

	// A reader of a corrupt copy that a Put replaced meanwhile does not
	// move the new, good copy aside when it finds the old one bad.
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	slow, _, err := b.Open(sha)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	repair()
	if _, err := io.Copy(io.Discard, slow); !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "already replaced") {
		t.Fatalf("the slow reader of the old copy: %v, want a mismatch that leaves the new copy", err)
	}
	if got, err := b.ReadAll(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the repaired blob after the slow reader: %d bytes, %v", len(got), err)
	}
	tmpEmpty(t, dir)
}

func TestBlobsInvalidSHA(t *testing.T) {
	b, _ := openBlobs(t)
	good := shaOf([]byte("x"))
	for _, sha := range []string{
		"",
		"abc",
		strings.ToUpper(good),
		good[:63] + "g",
		good + "0",
		"../../../../etc/passwd" + good[22:],
	} {
		if _, err := b.Put(sha, strings.NewReader("x"), 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%q): %v, want ErrInvalid", sha, err)
		}
		if _, err := b.ReadAll(sha); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReadAll(%q): %v, want ErrInvalid", sha, err)
		}
		if err := b.Delete(sha); !errors.Is(err, ErrInvalid) {
			t.Errorf("Delete(%q): %v, want ErrInvalid", sha, err)
		}
		if b.Has(sha) {
			t.Errorf("Has(%q) = true", sha)
		}
	}
}

func TestBlobsOpenCleansLeftovers(t *testing.T) {
	_, dir := openBlobs(t)
	leftover := filepath.Join(dir, "blobs", "tmp", "put-123")
	if err := os.WriteFile(leftover, []byte("half a module"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Junk in the shard tree is not listed.
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", "README"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmpEmpty(t, dir)
	if list, err := b.List(); err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if _, err := OpenBlobs(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("OpenBlobs(\"\"): %v", err)
	}
}

// TestBlobsConcurrent puts, reads and deletes from many goroutines, with
// several writers of the same blob; run it with -race.
func TestBlobsConcurrent(t *testing.T) {
	b, dir := openBlobs(t)
	const blobs, writers = 8, 4
	datas := make([][]byte, blobs)
	for i := range datas {
		datas[i] = bytes.Repeat([]byte(fmt.Sprintf("blob %d;", i)), 5000)
	}
	var wg sync.WaitGroup
	errs := make(chan error, blobs*writers*2)
	for i := range blobs {
		for range writers {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := b.Put(shaOf(datas[i]), bytes.NewReader(datas[i]), 0); err != nil {
					errs <- err
				}
			}()
			go func() {
				defer wg.Done()
				got, err := b.ReadAll(shaOf(datas[i]))
				if err != nil && !errors.Is(err, ErrBlobNotFound) {
					errs <- fmt.Errorf("reader saw a torn blob: %w", err)
				} else if err == nil && !bytes.Equal(got, datas[i]) {
					errs <- fmt.Errorf("reader got wrong bytes for blob %d", i)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := b.List()
	if err != nil || len(list) != blobs {
		t.Fatalf("List = %d blobs, %v; want %d", len(list), err, blobs)
	}
	tmpEmpty(t, dir)
	for _, sha := range list {
		wg.Add(2)
		go func() { defer wg.Done(); b.Delete(sha) }()
		go func() { defer wg.Done(); b.Delete(sha) }()
	}
	wg.Wait()
	if list, _ := b.List(); len(list) != 0 {
		t.Fatalf("List after deletes = %v", list)
	}
}
