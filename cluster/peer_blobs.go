package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// ReadBlob implements BlobReader: it returns the module sha from the
// local store or, when missing, fetches it from a peer. A fetch stops when
// ctx ends, so its owner's shutdown does not wait out Timeout for every
// unreachable peer.
func (p *PeerBlobs) ReadBlob(ctx context.Context, sha string) ([]byte, error) {
	b, err := p.Local.ReadAll(sha)
	if err == nil || !errors.Is(err, storage.ErrBlobNotFound) {
		return b, err
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	_, err = p.askPeers(ctx, timeout, func(ctx context.Context, url string) error {
		return p.Client.FetchBlob(ctx, url, sha, p.Local, p.MaxBytes)
	})
	if err == nil {
		return p.Local.ReadAll(sha)
	}
	return nil, fmt.Errorf("%w: %s is not on this node and no peer sent it: %w", storage.ErrBlobNotFound, sha, err)
}

// askPeers calls try with the peer API URL of each other server, the
// leader first (a deploy's blob and compiled code are on the node that
// took it, which is often the leader), each call bounded by timeout, until
// one succeeds or ctx ends. It returns the ID of the server that
// succeeded, or the errors of all.
func (p *PeerBlobs) askPeers(ctx context.Context, timeout time.Duration, try func(ctx context.Context, url string) error) (string, error) {
	servers, err := p.Node.Servers()
	if err != nil {
		return "", err
	}
	for i, s := range servers {
		if s.Leader && i > 0 {
			servers[0], servers[i] = servers[i], servers[0]
		}
	}
	var errs []error
	var unknown []string
	for _, s := range servers {
		if s.ID == p.Node.ID() {
			continue
		}
		url, ok := p.Peers.PeerURL(s.ID)
		if !ok {
			unknown = append(unknown, s.ID)
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		err := try(tctx, url)
		cancel()
		if err == nil {
			return s.ID, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(unknown) > 0 {
		// Without this a node cut off from gossip reported a module
		// missing everywhere, as if it had never been uploaded.
		errs = append(errs, fmt.Errorf("%w: the peer API address of server(s) %s is not known: gossip has not reported them (is the gossip port, cluster.gossip_bind, open over TCP and UDP between the nodes?)",
			errNoPeerAddress, strings.Join(unknown, ", ")))
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("%w: no other server in the Raft configuration", errNoPeerAddress)
	}
	return "", errors.Join(errs...)
}

// errNoPeerAddress is askPeers' error when it could not ask a server.
var errNoPeerAddress = errors.New("no peer to ask")
