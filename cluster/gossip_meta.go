package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"

	"github.com/gojinn/gojinn/storage"
)

// ErrMetaTooLarge means a node's encoded NodeMeta is over memberlist's
// 512-byte limit (memberlist.MetaMaxSize). The error wraps it together
// with storage.ErrInvalid and says how large the meta was.
var ErrMetaTooLarge = errors.New("gossip node meta too large")

// RoleServer is NodeMeta.Role of a full gojinn-node (edge, runtime and a
// Raft server or non-voter).
const RoleServer = "server"

// NodeMeta is what a node tells every other node about itself through
// gossip. It travels in every alive message and push/pull, so it is kept
// small: encoded, it must fit memberlist's 512 bytes (ErrMetaTooLarge).
type NodeMeta struct {
	// Role is what the node runs; RoleServer ("server") today.
	Role string
	// Region is a free-form location tag ("eu-west", "fra1"), used to
	// pick the nearest peers and voters; empty when unset.
	Region string
	// Version is the gojinn-node build version.
	Version string
	// RaftAddr is the host:port peers dial for Raft.
	RaftAddr string
	// APIAddr is the host:port of the node's cluster/admin API.
	APIAddr string
	// Name is the node's configured name (gojinn-node's node_name), which
	// must be unique among live members; empty when unset. The member's
	// gossip name is its node ID, not this.
	Name string
	// Started is when the node's process started, in Unix milliseconds (0:
	// unknown). When two live nodes claim one identity (node ID or Name),
	// the one started later stops (DESIGN.md, "Identity clashes").
	Started int64
}

// Tags of the meta wire format. Numbers are never reused: a decoder skips
// tags it does not know, so a newer node's meta stays readable.
const (
	metaFormatV1  = 1
	metaTagRole   = 1
	metaTagRegion = 2
	metaTagVer    = 3
	metaTagRaft   = 4
	metaTagAPI    = 5
	// metaTagLeaving marks a node that announced a graceful leave; peers
	// then report its departure as "left" rather than "dead" (memberlist
	// does not expose that distinction; see DESIGN.md, Membership).
	metaTagLeaving = 6
	metaTagName    = 7
	metaTagStarted = 8 // decimal Unix milliseconds
)

// encodeMeta encodes m as a format byte followed by (tag, uvarint length,
// bytes) fields; empty fields are left out. leaving adds the leave mark.
//
// The format is hand-rolled rather than JSON because every byte counts
// against the 512-byte limit and is repeated in every gossip message;
// this costs 2 bytes per field instead of JSON's ~12.
func encodeMeta(m NodeMeta, leaving bool) []byte {
	b := make([]byte, 1, 64)
	b[0] = metaFormatV1
	var started string
	if m.Started != 0 {
		started = strconv.FormatInt(m.Started, 10)
	}
	for _, f := range []struct {
		tag byte
		v   string
	}{
		{metaTagRole, m.Role}, {metaTagRegion, m.Region}, {metaTagVer, m.Version},
		{metaTagRaft, m.RaftAddr}, {metaTagAPI, m.APIAddr}, {metaTagName, m.Name},
		{metaTagStarted, started},
	} {
		if f.v == "" {
			continue
		}
		b = append(b, f.tag)
		b = binary.AppendUvarint(b, uint64(len(f.v)))
		b = append(b, f.v...)
	}
	if leaving {
		b = append(b, metaTagLeaving, 0)
	}
	return b
}

// decodeMeta is the inverse of encodeMeta. Empty input (a node that sends
// no meta) decodes to the zero NodeMeta. Unknown tags are skipped.
func decodeMeta(b []byte) (m NodeMeta, leaving bool, err error) {
	if len(b) == 0 {
		return NodeMeta{}, false, nil
	}
	if b[0] != metaFormatV1 {
		return NodeMeta{}, false, fmt.Errorf("gossip meta: unknown format %d (a newer gojinn-node?)", b[0])
	}
	b = b[1:]
	for len(b) > 0 {
		tag := b[0]
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || n > uint64(len(b)-1-w) {
			return NodeMeta{}, false, fmt.Errorf("gossip meta: field %d is truncated", tag)
		}
		v := b[1+w : 1+w+int(n)]
		b = b[1+w+int(n):]
		switch tag {
		case metaTagRole:
			m.Role = string(v)
		case metaTagRegion:
			m.Region = string(v)
		case metaTagVer:
			m.Version = string(v)
		case metaTagRaft:
			m.RaftAddr = string(v)
		case metaTagAPI:
			m.APIAddr = string(v)
		case metaTagLeaving:
			leaving = true
		case metaTagName:
			m.Name = string(v)
		case metaTagStarted:
			t, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return NodeMeta{}, false, fmt.Errorf("gossip meta: start time %q is not a number", v)
			}
			m.Started = t
		}
	}
	return m, leaving, nil
}

// validateMeta checks m's fields and that it fits memberlist's limit even
// with the leave mark added.
func validateMeta(m NodeMeta) error {
	for _, f := range []struct{ name, v string }{
		{"Role", m.Role}, {"Region", m.Region}, {"Version", m.Version},
		{"RaftAddr", m.RaftAddr}, {"APIAddr", m.APIAddr}, {"Name", m.Name},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("gossip meta: %s is not valid UTF-8: %w", f.name, storage.ErrInvalid)
		}
		for _, r := range f.v {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("gossip meta: %s %q contains a control character: %w", f.name, f.v, storage.ErrInvalid)
			}
		}
	}
	if n := len(encodeMeta(m, true)); n > memberlist.MetaMaxSize {
		return fmt.Errorf("gossip meta: %d bytes encoded, over memberlist's limit of %d; shorten Name, Region, Version or the addresses: %w: %w",
			n, memberlist.MetaMaxSize, ErrMetaTooLarge, storage.ErrInvalid)
	}
	return nil
}
