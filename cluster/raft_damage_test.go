package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// damagedDataDir is a closed node's data directory with two snapshots, the
// log compacted behind the newer one, and entries after it.
func damagedDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := inmemConfig(t, dir)
	cfg.TrailingLogs = 1
	s, err := OpenStore(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for round := range 3 {
		for i := range 5 {
			if _, err := s.KVPut(ctx, "a", fmt.Sprintf("k%d-%d", round, i), []byte("v"), KVWriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if round < 2 {
			if err := s.Node().Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newestSnapshot returns the directory of the snapshot with the highest
// index under dir's raft/snapshots.
func newestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	best, bestIndex := "", -1
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 3 {
			continue
		}
		if idx, err := strconv.Atoi(parts[1]); err == nil && idx > bestIndex {
			best, bestIndex = e.Name(), idx
		}
	}
	if len(entries) < 2 || best == "" {
		t.Fatalf("want two snapshots, have %v", entries)
	}
	return filepath.Join(dir, "raft", "snapshots", best)
}

// A damaged data directory is refused at start with a message that says
// what is wrong and what to do: no panic (a damaged newest snapshot, a
// truncated raft.db), no silent new registry (raft.db gone) and no silent
// new identity that would never lead (node-id gone).
func TestOpenRefusesDamagedDataDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"newest snapshot damaged", func(t *testing.T, dir string) {
			state := filepath.Join(newestSnapshot(t, dir), "state.bin")
			fi, err := os.Stat(state)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(state, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, []string{"cannot be loaded", "restore a backup"}},
		{"newest snapshot removed", func(t *testing.T, dir string) {
			if err := os.RemoveAll(newestSnapshot(t, dir)); err != nil {
				t.Fatal(err)
			}
		}, []string{"the log does not continue the snapshot", "restore a backup"}},
		{"raft.db truncated to two pages", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "raft", "raft.db"), 2*int64(os.Getpagesize())); err != nil {
				t.Fatal(err)
			}
		}, []string{"raft.db is damaged", "truncated"}},
		{"raft.db truncated by half", func(t *testing.T, dir string) {
			db := filepath.Join(dir, "raft", "raft.db")
			fi, err := os.Stat(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(db, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, []string{"raft.db is damaged"}},
		{"raft.db meta pages overwritten", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "raft", "raft.db"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, off := range []int64{16, int64(os.Getpagesize()) + 16} { // bbolt's page size is the OS's
				if _, err := f.WriteAt([]byte("garbage!"), off); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"raft.db is damaged", "neither meta page is valid"}},
		{"raft.db empty", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "raft", "raft.db"), 0); err != nil {
				t.Fatal(err)
			}
		}, []string{"raft.db is missing or empty", "registry and KV state are gone", "gojinn-node restore"}},
		{"raft.db removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "raft", "raft.db")); err != nil {
				t.Fatal(err)
			}
		}, []string{"raft.db is missing or empty"}},
		{"node-id removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "node-id")); err != nil {
				t.Fatal(err)
			}
		}, []string{"node-id is missing", "Restore node-id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := damagedDataDir(t)
			tc.damage(t, dir)
			s, err := OpenStore(testCtx(t), inmemConfig(t, dir))
			if err == nil {
				s.Close()
				t.Fatal("a damaged data directory opened")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.name == "node-id removed" {
				if _, err := os.Stat(filepath.Join(dir, "node-id")); err == nil {
					t.Error("a new node-id was written over the evidence")
				}
			}
		})
	}
}

// A second node refused on a data directory in use leaves the first's
// uploads under way alone (it removed blobs/tmp before finding the lock).
func TestSecondNodeLeavesUploadsAlone(t *testing.T) {
	dir := t.TempDir()
	openStore(t, inmemConfig(t, dir)) // the running node
	upload := filepath.Join(dir, "blobs", "tmp", "put-under-way")
	if err := os.WriteFile(upload, []byte("half a module"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s2, err := OpenStore(testCtx(t), inmemConfig(t, dir)); err == nil {
		s2.Close()
		t.Fatal("a second node opened a data directory in use")
	} else if !strings.Contains(err.Error(), "is locked") {
		t.Fatalf("second node: %v, want the lock named", err)
	}
	if _, err := os.Stat(upload); err != nil {
		t.Fatalf("the running node's upload under way: %v", err)
	}
}
