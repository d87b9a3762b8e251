package cluster

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// checkPrivate fails unless every directory under dir (dir included) is
// mode 0700 and every file 0600, and returns the paths of the state.bin
// files it saw.
func checkPrivate(t *testing.T, dir string) (states []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
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
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
		if d.Name() == "state.bin" {
			states = append(states, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return states
}

// The Raft log and snapshots hold function env values (secrets) in clear:
// every file under DATA/raft is 0600 and every directory 0700, for a
// snapshot taken now and, after a restart, for files an older version
// left readable by all (raft creates snapshots 0755 and 0644).
func TestSnapshotFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, inmemConfig(t, dir))
	ctx := testCtx(t)
	if _, err := s.Deploy(ctx, "fn", putModule(t, s, "private")); err != nil {
		t.Fatal(err)
	}
	if err := s.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	raftDir := filepath.Join(dir, "raft")
	states := checkPrivate(t, raftDir)
	if len(states) == 0 {
		t.Fatal("no snapshot state.bin under DATA/raft/snapshots")
	}
	b, err := os.ReadFile(states[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("hunter2-private")) {
		t.Fatal("the snapshot does not hold the env value: the test checks the wrong file")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// What an older version left behind.
	err = filepath.WalkDir(raftDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	openStore(t, inmemConfig(t, dir))
	checkPrivate(t, raftDir)
}
