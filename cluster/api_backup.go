package cluster

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// Backuper is what the backup endpoints need of the registry; *Store
// satisfies it. A registry without it answers 501.
type Backuper interface {
	Backup(ctx context.Context, w io.Writer) error
	Restore(ctx context.Context, r io.Reader) error
}

// CodeBadBackup is the error code of a restore whose input is not a
// Gojinn backup.
const CodeBadBackup = "bad_backup"

// CodeNotLeader is the error code of a restore sent to a follower (421):
// the message names the leader to send it to.
const CodeNotLeader = "not_leader"

func (a *api) backupRoutes() []apiRoute {
	return []apiRoute{
		{"GET", "/v1/backup", true, a.backup},
		{"POST", "/v1/restore", true, a.restore},
	}
}

func (a *api) backuper() (Backuper, error) {
	b, ok := a.cfg.Registry.(Backuper)
	if !ok {
		return nil, apiErrorf(http.StatusNotImplemented, "not_enabled", "this node's registry cannot take backups")
	}
	return b, nil
}

func (a *api) backup(w http.ResponseWriter, r *http.Request) error {
	b, err := a.backuper()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="gojinn-backup.tar"`)
	if err := b.Backup(r.Context(), w); err != nil {
		// The status is sent; a broken stream fails the client's tar read.
		a.log.Error("backup failed mid-stream", "err", err)
	}
	return nil
}

func (a *api) restore(w http.ResponseWriter, r *http.Request) error {
	b, err := a.backuper()
	if err != nil {
		return err
	}
	if err := b.Restore(r.Context(), r.Body); err != nil {
		if errors.Is(err, ErrBadBackup) {
			return apiErrorf(http.StatusUnprocessableEntity, CodeBadBackup, "%s", err.Error())
		}
		if errors.Is(err, ErrRestoreOnLeader) {
			return apiErrorf(http.StatusMisdirectedRequest, CodeNotLeader, "%s", err.Error())
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
