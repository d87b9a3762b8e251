package cluster

import (
	"errors"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// raftAddrBook is the Raft transport's raft.ServerAddressProvider: Raft
// dials a server at the address the member announces over gossip
// (NodeMeta.RaftAddr) while gossip reports it alive, and at the address
// in the Raft configuration otherwise. Only a leader can change the
// configuration, so without it a cluster whose nodes all came back on new
// addresses at once (a Docker network recreated on another subnet,
// renumbered VPSes) could never elect one: every candidate asked for
// votes at the old addresses. The leader then records the new addresses
// (Agent.heal), and the book and the configuration agree again.
type raftAddrBook struct {
	lookup atomic.Pointer[func(id string) (string, bool)]
}

var _ raft.ServerAddressProvider = (*raftAddrBook)(nil)

// errAddrNotGossiped makes raft use the configuration's address.
var errAddrNotGossiped = errors.New("gossip reports no live member with this ID")

// msgAddrFallback is what raft logs, at warn level, each time a provider
// returns an error; the adapter logs it at trace level (hclog.go), since
// for a member gossip does not report alive it is expected on every RPC.
const msgAddrFallback = "unable to get address for server, using fallback address"

// setLookup sets where the book finds members' announced Raft addresses
// (Membership.RaftAddr); before it is set, every server is dialled at its
// configured address.
func (b *raftAddrBook) setLookup(f func(id string) (string, bool)) { b.lookup.Store(&f) }

// ServerAddr implements raft.ServerAddressProvider.
func (b *raftAddrBook) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if f := b.lookup.Load(); f != nil {
		if addr, ok := (*f)(string(id)); ok {
			return raft.ServerAddress(addr), nil
		}
	}
	return "", errAddrNotGossiped
}
