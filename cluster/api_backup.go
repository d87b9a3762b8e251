package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gojinn/gojinn/storage"
)

// Backuper is what the backup endpoints need of the registry; *Store
// satisfies it. A registry without it answers 501.
type Backuper interface {
	// Backup writes a backup to w; c says whether it first catches up
	// with the cluster (Store.Backup).
	Backup(ctx context.Context, w io.Writer, c Consistency) error
	// Restore replaces the cluster's state with a backup read from r.
	Restore(ctx context.Context, r io.Reader) error
}

// CodeBadBackup is the error code of a restore whose input is not a
// Gojinn backup.
const CodeBadBackup = "bad_backup"

// CodeNotLeader is the error code of a restore sent to a follower that
// cannot forward it to the leader (421): the message names the leader to
// send it to.
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

// backup answers GET /v1/backup?consistency=: a tar stream. The default
// (linearizable) catches up with the cluster first; local reads this
// node's state as it is (a cluster without a leader).
func (a *api) backup(w http.ResponseWriter, r *http.Request) error {
	b, err := a.backuper()
	if err != nil {
		return err
	}
	c := ConsistencyLinearizable
	switch s := r.URL.Query().Get("consistency"); s {
	case "", string(ConsistencyLinearizable):
	case string(ConsistencyLocal):
		c = ConsistencyLocal
	default:
		return apiErrorf(http.StatusBadRequest, CodeInvalid, "consistency %q: a backup takes \"linearizable\" (the default: it first catches up with the cluster) or \"local\" (this node's state as it is)", s)
	}
	tw := &tarResponse{w: w}
	if err := b.Backup(r.Context(), tw, c); err != nil {
		if !tw.started {
			// Nothing sent yet (e.g. no leader to catch up with): a
			// proper error answer. A backup is a read: not the writes'
			// "cannot take writes" answer (errors.go), but Backup's own
			// words, which offer the local backup.
			if unavailable(err) && !outcomeUnknown(err) {
				ae := apiErrorf(http.StatusServiceUnavailable, CodeUnavailable, "%v", err)
				ae.RetryAfter = retryAfter
				return ae
			}
			return err
		}
		// The status is sent. Ending the answer normally would hand the
		// client a tar cut at an entry boundary, which reads as a whole
		// (smaller) backup: abort it, so the client's read fails.
		a.log.Error("backup failed mid-stream; the answer is cut off", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// tarResponse sets the backup's headers at its first byte, so a backup
// that fails before writing anything answers an API error instead.
type tarResponse struct {
	w       http.ResponseWriter
	started bool
}

func (t *tarResponse) Write(p []byte) (int, error) {
	if !t.started {
		t.started = true
		t.w.Header().Set("Content-Type", "application/x-tar")
		t.w.Header().Set("Content-Disposition", `attachment; filename="gojinn-backup.tar"`)
	}
	return t.w.Write(p)
}

func (a *api) restore(w http.ResponseWriter, r *http.Request) error {
	b, err := a.backuper()
	if err != nil {
		return err
	}
	before := a.cfg.Registry.Functions()
	if err := b.Restore(r.Context(), r.Body); err != nil {
		if errors.Is(err, ErrBadBackup) {
			return apiErrorf(http.StatusUnprocessableEntity, CodeBadBackup, "%s", err.Error())
		}
		if errors.Is(err, ErrRestoreOnLeader) {
			return apiErrorf(http.StatusMisdirectedRequest, CodeNotLeader, "%s", err.Error())
		}
		return err
	}
	a.log.Info("backup restored", "functions", len(a.cfg.Registry.Functions()))
	if err := a.waitRestored(r.Context(), before); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// waitRestored waits, as a deploy does, until the active version of every
// function the restore left is served (on every live member of a
// cluster), and until the functions it dropped (of before, the list
// before it) are no longer routed, for at most the deploy wait bound in
// all: a restore that answers has its functions serving, so a script may
// call them at once.
func (a *api) waitRestored(ctx context.Context, before []storage.Function) error {
	d := a.cfg.WaitTimeout
	if a.cfg.WaitReady == nil || d == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var late, broken []string
	kept := map[string]bool{}
	for _, f := range a.cfg.Registry.Functions() {
		kept[f.Name] = true
		err := a.cfg.WaitReady(wctx, f.Name, f.Active)
		var sup *SupersededError
		switch {
		case err == nil, errors.As(err, &sup):
			// Served, or a later write already replaced it.
		case ctx.Err() != nil:
			return err // the client went away
		case errors.Is(err, context.DeadlineExceeded):
			late = append(late, fmt.Sprintf("%s version %d (%v)", f.Name, f.Active, err))
		default:
			broken = append(broken, fmt.Sprintf("%s version %d (%v)", f.Name, f.Active, err))
		}
	}
	if a.cfg.WaitRemoved != nil {
		for _, f := range before {
			if kept[f.Name] {
				continue
			}
			if err := a.cfg.WaitRemoved(wctx, f.Name); err != nil {
				if ctx.Err() != nil {
					return err
				}
				late = append(late, fmt.Sprintf("%s still routed (%v)", f.Name, err))
			}
		}
	}
	switch {
	case len(broken) > 0:
		return apiErrorf(http.StatusInternalServerError, CodeNotReady,
			"the backup is restored, but these functions cannot be served: %s; deploy them again or roll them back (`gojinn-node functions rollback`)",
			strings.Join(append(broken, late...), "; "))
	case len(late) > 0:
		return apiErrorf(http.StatusGatewayTimeout, CodeWaitTimeout,
			"the backup is restored, but within %v these functions were not confirmed serving (or, when dropped by the restore, gone): %s; they may still get there: check GET /v1/functions (`gojinn-node functions`)",
			d, strings.Join(late, "; "))
	}
	return nil
}
