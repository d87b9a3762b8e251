package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// PeerBlobs is the reconciler's BlobReader on a cluster node: a module the
// node does not have yet (it was uploaded to another node) is fetched from
// a peer, verified by its sha256 and kept locally. The leader is asked
// first, then every other server.
type PeerBlobs struct {
	Local    *storage.Blobs
	Node     *Node
	Client   *PeerClient
	Peers    PeerResolver
	MaxBytes int64
	// Timeout bounds one fetch. Default 2 minutes.
	Timeout time.Duration
	// ArtifactTimeout bounds fetching compiled artifacts from one peer
	// (FetchArtifacts), and twice that from all. Default 5 seconds.
	ArtifactTimeout time.Duration
}

// ReadAll implements BlobReader.
func (p *PeerBlobs) ReadAll(sha string) ([]byte, error) {
	b, err := p.Local.ReadAll(sha)
	if err == nil || !errors.Is(err, storage.ErrBlobNotFound) {
		return b, err
	}
	servers, serr := p.Node.Servers()
	if serr != nil {
		return nil, serr
	}
	// The leader first: a deploy's blob is on the node that took the
	// upload, which is often the leader, and the leader is up.
	for i, s := range servers {
		if s.Leader && i > 0 {
			servers[0], servers[i] = servers[i], servers[0]
		}
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	var errs []error
	for _, s := range servers {
		if s.ID == p.Node.ID() {
			continue
		}
		url, ok := p.Peers.PeerURL(s.ID)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := p.Client.FetchBlob(ctx, url, sha, p.Local, p.MaxBytes)
		cancel()
		if err == nil {
			return p.Local.ReadAll(sha)
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %s is not on this node and no peer sent it: %w", storage.ErrBlobNotFound, sha, errors.Join(errs...))
}
