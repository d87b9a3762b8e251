package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// A module missing here whose servers' peer API addresses gossip never
// reported (the gossip port firewalled) is reported as such, not as
// "upload the module first": the cluster has it, this node cannot reach
// anyone who could send it.
func TestReadBlobWithoutPeerAddressesSaysWhy(t *testing.T) {
	_, leader, _ := threeVoters(t)
	empty, err := storage.OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pb := &PeerBlobs{Local: empty, Node: leader.store.Node(), Peers: &StaticPeers{}, Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.ReadBlob(ctx, strings.Repeat("ab", 32))
	if !errors.Is(err, storage.ErrBlobNotFound) || !strings.Contains(err.Error(), "gossip has not reported them") || strings.Contains(err.Error(), "upload the module first") {
		t.Fatalf("a module no peer could be asked for: %v; want ErrBlobNotFound naming the unknown peer addresses, not asking for an upload", err)
	}
}
