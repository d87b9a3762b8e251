package cluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// peersFileName, in DATA/cluster, remembers where the other members' peer
// APIs were last seen. A restarting node uses those addresses as join
// seeds, so it finds the cluster again without cluster.join (the node that
// bootstrapped has none) and after its own or the seeds' addresses
// changed.
const peersFileName = "peers"

// maxKnownPeers bounds the peers file; the members seen most recently are
// kept.
const maxKnownPeers = 32

// knownPeer is one line of the peers file.
type knownPeer struct {
	ID      string `json:"id"`
	APIAddr string `json:"api_addr"`
	// Seen is when the member was last seen alive (Unix seconds; 0 if
	// never, e.g. learned as dead). It orders members under the bound.
	Seen int64 `json:"seen,omitempty"`
}

type peersFileJSON struct {
	Peers []knownPeer `json:"peers"`
}

// knownPeers is this node's list of the last-known members' peer API
// addresses, kept in memory and on disk. Not safe for concurrent use: the
// agent's member watcher owns it.
type knownPeers struct {
	path  string
	self  string // this node's ID, never listed
	peers map[string]knownPeer
	dirty bool // the last write failed: retry at the next update
}

// loadKnownPeers reads DATA/cluster/peers. A missing file is an empty
// list; an unreadable or corrupt one is an empty list and an error to log
// (the file is only a hint: the next membership change rewrites it).
func loadKnownPeers(dir, self string) (*knownPeers, error) {
	k := &knownPeers{path: filepath.Join(dir, peersFileName), self: self, peers: map[string]knownPeer{}}
	b, err := os.ReadFile(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return k, fmt.Errorf("cluster: read the last-known peers: %w", err)
	}
	var f peersFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return k, fmt.Errorf("cluster: %s is not a peers file (it is rewritten at the next membership change): %w", k.path, err)
	}
	for _, p := range f.Peers {
		if p.ID != "" && p.ID != self && p.APIAddr != "" {
			k.peers[p.ID] = p
		}
	}
	k.trim()
	return k, nil
}

// seeds returns the known peer API addresses, most recently seen first,
// without this node's own address.
func (k *knownPeers) seeds(own string) []string {
	var out []string
	for _, p := range k.sorted() {
		if p.APIAddr != own && !slices.Contains(out, p.APIAddr) {
			out = append(out, p.APIAddr)
		}
	}
	return out
}

// update merges gossip's view into the list: alive and dead members are
// recorded at their current address (a dead one may come back there),
// members that left are forgotten, and members gossip no longer shows are
// kept, because a restarted node sees only itself until it rejoins. It
// writes the file (atomically, 0600) when an address was added, changed or
// dropped, or the last write failed, and reports whether it wrote.
func (k *knownPeers) update(members []Member, now time.Time) (bool, error) {
	before := k.addrs()
	for _, m := range members {
		if m.Name == "" || m.Name == k.self {
			continue
		}
		p, had := k.peers[m.Name]
		switch m.Status {
		case StatusLeft:
			delete(k.peers, m.Name)
			continue
		case StatusAlive:
			p.Seen = now.Unix()
		case StatusDead:
		default: // leaving: about to be left
			continue
		}
		if m.Meta.APIAddr == "" {
			continue
		}
		if !had || p.APIAddr != m.Meta.APIAddr || m.Status == StatusAlive {
			p.ID, p.APIAddr = m.Name, m.Meta.APIAddr
			k.peers[m.Name] = p
		}
	}
	k.trim()
	if k.addrs() == before && !k.dirty {
		return false, nil
	}
	err := k.save()
	k.dirty = err != nil
	return true, err
}

// trim keeps the maxKnownPeers most recently seen members.
func (k *knownPeers) trim() {
	if len(k.peers) <= maxKnownPeers {
		return
	}
	for _, p := range k.sorted()[maxKnownPeers:] {
		delete(k.peers, p.ID)
	}
}

// sorted lists the members most recently seen first (then by ID, so the
// order is stable).
func (k *knownPeers) sorted() []knownPeer {
	out := make([]knownPeer, 0, len(k.peers))
	for _, p := range k.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b knownPeer) int {
		return cmp.Or(cmp.Compare(b.Seen, a.Seen), strings.Compare(a.ID, b.ID))
	})
	return out
}

// addrs is the list's content without the times, to tell whether it
// changed.
func (k *knownPeers) addrs() string {
	var b strings.Builder
	ids := make([]string, 0, len(k.peers))
	for id := range k.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		b.WriteString(id + "=" + k.peers[id].APIAddr + "\n")
	}
	return b.String()
}

func (k *knownPeers) save() error {
	f := peersFileJSON{Peers: k.sorted()}
	slices.SortFunc(f.Peers, func(a, b knownPeer) int { return strings.Compare(a.ID, b.ID) })
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("cluster: encode the last-known peers: %w", err)
	}
	return writeSecretFile(k.path, buf.Bytes())
}
