package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrTooLarge means a module is longer than the limit the caller set.
var ErrTooLarge = errors.New("module too large")

// ErrBlobStore means the blob store could not write a module to this
// node's disk (full, read-only, failing): not a fault of the module's.
var ErrBlobStore = errors.New("the blob store cannot write")

// Blobs is a content-addressed store of module bytes on the local disk.
// A module lives at DIR/blobs/sha256/ab/<hex>, where <hex> is the lower-case
// sha256 of its bytes and ab its first two characters (so no directory holds
// more than 1/256 of the modules).
//
// Writes go to a temporary file under DIR/blobs/tmp, are fsynced and renamed
// into place, so a reader sees either no blob or the whole blob, never a torn
// one. The hash is checked while the bytes stream in and again whenever they
// are read back, so a corrupted file is reported, never served; it is
// moved aside to DIR/blobs/corrupt then, so the store no longer has the
// blob: the next upload of the module (a redeploy) stores it again, and a
// cluster node fetches it from a peer.
//
// Blobs is safe for concurrent use: every write is a rename of a private
// temporary file, and two writers of the same hash write the same bytes. One
// directory must not be shared by two processes' Blobs while either writes
// (OpenBlobs removes leftover temporary files).
type Blobs struct {
	root    string // DIR/blobs/sha256
	tmp     string // DIR/blobs/tmp
	corrupt string // DIR/blobs/corrupt: blobs whose bytes failed their hash

	syncedShards sync.Map // shard directories whose entry in root was fsynced
}

// OpenBlobs opens (creating if needed) the blob store under dir/blobs and
// removes temporary files a crash may have left behind.
func OpenBlobs(dir string) (*Blobs, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: blob store needs a data directory", ErrInvalid)
	}
	b := &Blobs{
		root:    filepath.Join(dir, "blobs", "sha256"),
		tmp:     filepath.Join(dir, "blobs", "tmp"),
		corrupt: filepath.Join(dir, "blobs", "corrupt"),
	}
	// Modules are the operator's code, and may embed configuration: the
	// store is private to the node's user, like the files in it (0600,
	// from os.CreateTemp).
	for _, d := range []string{b.root, b.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob store: create %s: %w (check the data directory's permissions)", d, err)
		}
	}
	leftovers, err := os.ReadDir(b.tmp)
	if err != nil {
		return nil, fmt.Errorf("blob store: read %s: %w", b.tmp, err)
	}
	for _, e := range leftovers {
		if err := os.Remove(filepath.Join(b.tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("blob store: remove leftover %s: %w", e.Name(), err)
		}
	}
	return b, nil
}

// ValidateSHA256 checks that s is a sha256 in the form the store uses: 64
// lower-case hex characters.
func ValidateSHA256(s string) error {
	if len(s) != sha256.Size*2 {
		return fmt.Errorf("%w: sha256 %q must be 64 lower-case hex characters, has %d", ErrInvalid, clip(s), len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: sha256 %q must be 64 lower-case hex characters (character %d is %q)", ErrInvalid, clip(s), i, c)
		}
	}
	return nil
}

// clip shortens untrusted strings before they go into error messages.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (b *Blobs) path(sha string) string {
	return filepath.Join(b.root, sha[:2], sha)
}

// Put stores the bytes read from r under sha, reading at most maxBytes
// (maxBytes <= 0 means no limit). It returns the number of bytes stored.
//
// The bytes must hash to sha: otherwise Put returns an error wrapping
// ErrHashMismatch and leaves nothing behind. A module longer than maxBytes
// gives ErrTooLarge. Putting a blob that is already stored replaces the
// file with the verified new copy, which repairs a copy corrupted on disk;
// readers of the old file are not disturbed.
func (b *Blobs) Put(sha string, r io.Reader, maxBytes int64) (int64, error) {
	if err := ValidateSHA256(sha); err != nil {
		return 0, err
	}
	_, n, err := b.write(r, maxBytes, sha)
	return n, err
}

// Add stores the bytes read from r (at most maxBytes; <= 0 means no limit)
// under their own sha256, which it returns with their length. Use it when
// the caller does not know the hash in advance.
func (b *Blobs) Add(r io.Reader, maxBytes int64) (sha string, size int64, err error) {
	return b.write(r, maxBytes, "")
}

// write streams r into a temporary file while hashing it, checks the hash
// against want (when not empty) and renames the file into place.
func (b *Blobs) write(r io.Reader, maxBytes int64, want string) (string, int64, error) {
	f, err := os.CreateTemp(b.tmp, "put-*")
	if err != nil {
		return "", 0, fmt.Errorf("%w: create temporary file: %w (is the disk full or read-only?)", ErrBlobStore, err)
	}
	tmpName := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmpName)
		}
	}()

	h := sha256.New()
	n, err := copyLimited(io.MultiWriter(f, h), r, maxBytes)
	if err != nil {
		return "", n, err
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if want != "" && sha != want {
		return "", n, fmt.Errorf("%w: claimed sha256 %s, the %d bytes hash to %s (upload the module again, or fix the hash)", ErrHashMismatch, want, n, sha)
	}
	if err := f.Sync(); err != nil {
		return "", n, fmt.Errorf("%w: fsync %s: %w", ErrBlobStore, tmpName, err)
	}
	if err := f.Close(); err != nil {
		return "", n, fmt.Errorf("%w: close %s: %w", ErrBlobStore, tmpName, err)
	}
	dst := b.path(sha)
	shard := filepath.Dir(dst)
	if err := os.MkdirAll(shard, 0o700); err != nil {
		return "", n, fmt.Errorf("%w: create %s: %w", ErrBlobStore, shard, err)
	}
	if _, synced := b.syncedShards.Load(shard); !synced {
		// The shard directory's entry in the store's root must be durable
		// too, or the blob may vanish with it after a crash: synced once
		// per shard and process, also when another writer created it
		// and has not synced the root yet.
		if err := syncDir(b.root); err != nil {
			return "", n, err
		}
		b.syncedShards.Store(shard, true)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return "", n, fmt.Errorf("%w: move blob into place: %w", ErrBlobStore, err)
	}
	committed = true
	// Make the rename itself durable.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return "", n, err
	}
	return sha, n, nil
}

// copyLimited copies r to w, failing with ErrTooLarge past maxBytes. An
// error writing w wraps ErrBlobStore; one reading r is the reader's.
func copyLimited(w io.Writer, r io.Reader, maxBytes int64) (int64, error) {
	src := r
	if maxBytes > 0 {
		src = io.LimitReader(r, maxBytes+1)
	}
	sw := &stickyWriter{w: w}
	n, err := io.Copy(sw, src)
	if sw.err != nil {
		return n, fmt.Errorf("%w: write module: %w", ErrBlobStore, sw.err)
	}
	if err != nil {
		return n, fmt.Errorf("blob store: read module: %w", err)
	}
	if maxBytes > 0 && n > maxBytes {
		return n, fmt.Errorf("%w: module is longer than the limit of %d bytes (raise the limit or shrink the module)", ErrTooLarge, maxBytes)
	}
	return n, nil
}

// stickyWriter remembers the first error writing w.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

func checkSum(want string, h hash.Hash, what string) error {
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return fmt.Errorf("%w: %s hash to %s, not %s", ErrHashMismatch, what, got, want)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: open %s for fsync: %w", ErrBlobStore, dir, err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%w: fsync %s: %w", ErrBlobStore, dir, err)
	}
	return nil
}

// Has reports whether the blob sha is stored. It does not verify the bytes;
// an invalid sha is never stored.
func (b *Blobs) Has(sha string) bool {
	if ValidateSHA256(sha) != nil {
		return false
	}
	fi, err := os.Stat(b.path(sha))
	return err == nil && fi.Mode().IsRegular()
}

// Stat returns the stored length of blob sha, or an error wrapping
// ErrBlobNotFound.
func (b *Blobs) Stat(sha string) (int64, error) {
	if err := ValidateSHA256(sha); err != nil {
		return 0, err
	}
	fi, err := os.Stat(b.path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s (upload the module first)", ErrBlobNotFound, sha)
	}
	if err != nil {
		return 0, fmt.Errorf("blob store: stat %s: %w", sha, err)
	}
	return fi.Size(), nil
}

// Open returns a reader of blob sha and its length. The reader checks the
// hash as it goes: the Read that reaches the end returns an error wrapping
// ErrHashMismatch instead of io.EOF if the file on disk was corrupted, so
// callers must read to the end before trusting the bytes. A missing blob
// gives ErrBlobNotFound.
func (b *Blobs) Open(sha string) (io.ReadCloser, int64, error) {
	if err := ValidateSHA256(sha); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(b.path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s (upload the module first)", ErrBlobNotFound, sha)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blob store: open %s: %w", sha, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("blob store: stat %s: %w", sha, err)
	}
	return &verifyingReader{f: f, h: sha256.New(), sha: sha, path: f.Name(), quarantine: b.quarantine}, fi.Size(), nil
}

// quarantine moves the corrupt file read through read aside, so that the
// store no longer has its blob, and says where it went (or why it could
// not). A file that is no longer the one at path (a Put replaced it with
// a verified copy while this reader read the old one) stays.
func (b *Blobs) quarantine(read *os.File, path, sha string) string {
	readFi, err1 := read.Stat()
	pathFi, err2 := os.Stat(path)
	if err1 == nil && err2 == nil && !os.SameFile(readFi, pathFi) {
		return "already replaced by a new copy"
	}
	if errors.Is(err2, fs.ErrNotExist) {
		return "another reader moved it aside already"
	}
	if err := os.MkdirAll(b.corrupt, 0o700); err != nil {
		return fmt.Sprintf("it could not be moved aside (%v): delete it", err)
	}
	dst := filepath.Join(b.corrupt, fmt.Sprintf("%s-%d", sha, time.Now().UnixNano()))
	if err := os.Rename(path, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "another reader moved it aside already"
		}
		return fmt.Sprintf("it could not be moved aside (%v): delete it", err)
	}
	return "moved to " + dst
}

// verifyingReader hashes what it reads and checks the sum at EOF.
type verifyingReader struct {
	f          *os.File
	h          hash.Hash
	sha        string
	path       string
	quarantine func(read *os.File, path, sha string) string
	err        error // sticky result once EOF was reached
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if cerr := checkSum(v.sha, v.h, "stored bytes"); cerr != nil {
			where := v.quarantine(v.f, v.path, v.sha)
			v.err = fmt.Errorf("blob store: %s was corrupt: %w (%s; upload the module again: a redeploy does, and a cluster node fetches it from a peer)", v.path, cerr, where)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// ReadAll returns the bytes of blob sha after checking their hash. A missing
// blob gives ErrBlobNotFound, a corrupted one ErrHashMismatch.
func (b *Blobs) ReadAll(sha string) ([]byte, error) {
	rc, size, err := b.Open(sha)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Room for the whole file plus ReadFrom's minimum read, so it never
	// reallocates.
	buf.Grow(int(size) + bytes.MinRead)
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadBlob is ReadAll for readers that may have to wait for a module
// (the reconciler's cluster.BlobReader): a local read does not wait, so
// ctx only stops a read that has not started.
func (b *Blobs) ReadBlob(ctx context.Context, sha string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob store: read %s: %w", sha, context.Cause(ctx))
	}
	return b.ReadAll(sha)
}

// Delete removes blob sha. Deleting a blob that is not stored is not an
// error, so garbage collection can run twice.
func (b *Blobs) Delete(sha string) error {
	if err := ValidateSHA256(sha); err != nil {
		return err
	}
	err := os.Remove(b.path(sha))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob store: delete %s: %w", sha, err)
	}
	return nil
}

// List returns the sha256 of every stored blob, sorted. Files whose names
// are not a sha256 in the right shard directory are ignored.
func (b *Blobs) List() ([]string, error) {
	shards, err := os.ReadDir(b.root)
	if err != nil {
		return nil, fmt.Errorf("blob store: list %s: %w", b.root, err)
	}
	var out []string
	for _, shard := range shards {
		if !shard.IsDir() || len(shard.Name()) != 2 {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(b.root, shard.Name()))
		if err != nil {
			return nil, fmt.Errorf("blob store: list shard %s: %w", shard.Name(), err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.Type().IsRegular() && ValidateSHA256(name) == nil && strings.HasPrefix(name, shard.Name()) {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
