package cluster

import (
	"errors"
	"io"
	"net/http"

	"github.com/gojinn/gojinn/storage"
)

// validSHA256 checks a module hash as the blob store does.
func validSHA256(s string) error {
	if err := storage.ValidateSHA256(s); err != nil {
		return apiErrorf(http.StatusBadRequest, CodeInvalidSHA256, "%v; send the module's sha256 as sha256sum prints it", err)
	}
	return nil
}

// headBlob answers HEAD /v1/blobs/{sha256}: 200 when stored, else 404.
func (a *api) headBlob(w http.ResponseWriter, r *http.Request) error {
	sha := r.PathValue("sha256")
	if err := validSHA256(sha); err != nil {
		return err
	}
	if !a.cfg.Blobs.Has(sha) {
		return apiErrorf(http.StatusNotFound, CodeBlobMissing, "module %s is not stored on this node", sha)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// putBlob answers PUT /v1/blobs/{sha256}: the body is the module.
func (a *api) putBlob(w http.ResponseWriter, r *http.Request) error {
	sha := r.PathValue("sha256")
	if err := validSHA256(sha); err != nil {
		return err
	}
	limit := a.cfg.MaxModuleBytes
	if r.ContentLength > limit {
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeModuleTooLarge,
			"the module is %d bytes; this node accepts modules up to %d bytes", r.ContentLength, limit)
	}
	// The store enforces maxBytes too, but how it reports that is its own
	// business; counting here makes the 413 certain.
	body := &limitedBody{r: r.Body, left: limit}
	n, err := a.cfg.Blobs.Put(sha, body, limit)
	switch {
	case body.over:
		return apiErrorf(http.StatusRequestEntityTooLarge, CodeModuleTooLarge,
			"the module is larger than %d bytes, the most this node accepts", limit)
	case err != nil:
		return err
	}
	a.log.Info("module stored", "sha256", sha, "size", n)
	a.writeJSON(w, http.StatusCreated, BlobInfo{SHA256: sha, Size: n})
	return nil
}

// limitedBody reads at most left bytes and notes when the body has more.
type limitedBody struct {
	r    io.Reader
	left int64
	over bool
}

// errModuleTooLarge stops Put when the body passes the limit.
var errModuleTooLarge = errors.New("module larger than the limit")

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Probe one byte: a body of exactly the limit is fine.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errModuleTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
