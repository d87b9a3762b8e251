package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// privateSnapshots is raft's FileSnapshotStore (DATA/raft/snapshots) with
// its directories mode 0700 and its files 0600. A snapshot holds every
// function's env (secrets) and the KV data in clear, and raft creates
// them 0755 and 0644 with no option to change that: the private raft/
// parent alone protects them in place, but not in a copy of the
// directory (a backup made with cp -r, say).
//
// Create restricts the new snapshot right after raft made it, while its
// state file is still empty: the FSM writes into it only once Create has
// returned. Opening the store restricts snapshots an older version left
// readable. Raft names no new file after Create (it rewrites meta.json in
// place and renames the directory), which TestSnapshotFilesPrivate checks
// should a raft upgrade change that.
type privateSnapshots struct {
	raft.SnapshotStore
	dir string // DATA/raft/snapshots
}

// newPrivateSnapshots opens raft's file snapshot store in raftDir,
// keeping retain snapshots, and restricts every snapshot already there.
func newPrivateSnapshots(raftDir string, retain int, logger hclog.Logger) (*privateSnapshots, error) {
	fss, err := raft.NewFileSnapshotStoreWithLogger(raftDir, retain, logger)
	if err != nil {
		return nil, err
	}
	s := &privateSnapshots{SnapshotStore: fss, dir: filepath.Join(raftDir, "snapshots")}
	if err := makePrivate(s.dir); err != nil {
		return nil, fmt.Errorf("make the snapshots private (dirs 0700, files 0600): %w", err)
	}
	return s, nil
}

// Create starts a snapshot as raft's store does and restricts it before
// anything is written to its state file.
func (s *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64,
	configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	if err := makePrivate(s.dir); err != nil {
		_ = sink.Cancel() // the snapshot fails either way; err says why
		return nil, fmt.Errorf("raft: make snapshot %s private (dirs 0700, files 0600): %w", sink.ID(), err)
	}
	return sink, nil
}

// makePrivate sets dir and every directory below it to mode 0700 and every
// regular file to 0600. Entries that vanish meanwhile (raft renaming or
// reaping a snapshot) are skipped; symbolic links are left alone, since
// chmod would follow them out of the tree.
func makePrivate(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = 0o700
		case d.Type().IsRegular():
			want = 0o600
		default:
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm() == want {
			return nil
		}
		if err := os.Chmod(path, want); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}
