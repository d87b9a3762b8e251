package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gojinn/gojinn/storage"
)

// Defaults of Config.
const (
	// DefaultRaftBind is where Raft listens when Config.RaftBind is empty.
	DefaultRaftBind = "127.0.0.1:7947"
	// DefaultApplyTimeout bounds Node.Apply when its context has no
	// deadline.
	DefaultApplyTimeout = 10 * time.Second
	// snapshotRetain is how many Raft snapshots stay on disk.
	snapshotRetain = 2
	// maxNodeIDLen bounds a node ID; it appears in every Raft RPC.
	maxNodeIDLen = 128
)

// Config configures a Node. Zero fields take the defaults DefaultConfig
// states; DataDir and FSM are required.
type Config struct {
	// DataDir holds the node's state: node-id, raft/raft.db (log and stable
	// store) and raft/snapshots. Required.
	DataDir string
	// NodeID is the node's Raft server ID. Default: an ID generated on
	// first start and kept in DataDir/node-id. A set NodeID must match the
	// one a data directory already has.
	NodeID string
	// RaftBind is the TCP host:port Raft listens on. Default
	// DefaultRaftBind ("127.0.0.1:7947"); port 0 picks a free port.
	RaftBind string
	// RaftAdvertise is the host:port peers dial. Default: the address
	// RaftBind actually bound (so port 0 advertises the real port). Needed
	// when RaftBind is an unspecified address such as 0.0.0.0.
	RaftAdvertise string
	// Transport replaces the TCP transport (tests use
	// raft.NewInmemTransport); RaftBind and RaftAdvertise are then ignored.
	// The Node closes it on Close when it has a Close method.
	Transport raft.Transport
	// Join makes a node with no Raft state wait to be added to an existing
	// cluster (AddServer on its leader) instead of bootstrapping a
	// single-voter cluster of its own. Default false.
	Join bool
	// FSM is the replicated state machine. Required.
	FSM raft.FSM
	// Logger receives the node's and Raft's logs. Default: discard.
	Logger *slog.Logger
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout tune
	// failure detection. Defaults: raft's (1 s, 1 s, 500 ms), which fail
	// over in about 2 s on loopback; FastConfig uses 200/200/100 ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one. Default raft's 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often Raft checks SnapshotThreshold.
	// Default raft's 120 s.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log so a
	// slightly behind follower catches up without a snapshot. Default
	// raft's 10240. A snapshot taken for LogBytesSnapshot leaves fewer
	// when the entries are large (TrailingLogBytes).
	TrailingLogs uint64
	// LogBytesSnapshot is how many bytes of entries stored since the last
	// snapshot trigger a new one, whatever their number: raft counts
	// entries only, and KV values of up to 1 MiB would otherwise grow the
	// log to gigabytes (8192 entries before a snapshot, 10240 after).
	// Default DefaultLogBytesSnapshot (256 MiB).
	LogBytesSnapshot int64
	// TrailingLogBytes is about how many bytes of entries such a snapshot
	// leaves in the log: TrailingLogs is lowered to this divided by the
	// entries' mean size (at least 64). Default DefaultTrailingLogBytes
	// (64 MiB).
	TrailingLogBytes int64
	// ApplyTimeout bounds Apply when its context has no deadline. Default
	// DefaultApplyTimeout (10 s).
	ApplyTimeout time.Duration
	// CommitTimeout is how long an idle leader waits (up to twice as
	// long, staggered) before it tells followers the commit index
	// (raft's CommitTimeout). A follower that forwarded a write answers
	// once it applied it (read-your-writes on the node that took the
	// write), so when no other writes flow this is what a forwarded
	// write waits on top of its round trip: at raft's 50 ms default a
	// sequential KV put through a follower took ~77 ms, at 5 ms ~11 ms
	// (docs/benchmarks.md). Default DefaultCommitTimeout.
	CommitTimeout time.Duration
}

// DefaultCommitTimeout is Config.CommitTimeout's default: an idle leader
// then sends each follower an empty AppendEntries every 10-20 ms (at most
// one per round trip), a few kB/s, instead of every 50-100 ms.
const DefaultCommitTimeout = 10 * time.Millisecond

// Defaults of Config.LogBytesSnapshot and Config.TrailingLogBytes.
const (
	DefaultLogBytesSnapshot = 256 << 20
	DefaultTrailingLogBytes = 64 << 20
)

// DefaultConfig returns the production defaults. Set DataDir and FSM.
func DefaultConfig() Config {
	rc := raft.DefaultConfig()
	return Config{
		RaftBind:           DefaultRaftBind,
		HeartbeatTimeout:   rc.HeartbeatTimeout,
		ElectionTimeout:    rc.ElectionTimeout,
		LeaderLeaseTimeout: rc.LeaderLeaseTimeout,
		SnapshotThreshold:  rc.SnapshotThreshold,
		SnapshotInterval:   rc.SnapshotInterval,
		TrailingLogs:       rc.TrailingLogs,
		LogBytesSnapshot:   DefaultLogBytesSnapshot,
		TrailingLogBytes:   DefaultTrailingLogBytes,
		ApplyTimeout:       DefaultApplyTimeout,
		CommitTimeout:      DefaultCommitTimeout,
	}
}

// LANConfig returns DefaultConfig with 500/500/250 ms timeouts: servers
// within one region (round trips well under 10 ms), where raft's 1 s
// defaults make failover take about 2 s. Clustered agents use it with the
// gossip profile "lan"; "wan" keeps the defaults.
func LANConfig() Config {
	c := DefaultConfig()
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	return c
}

// FastConfig returns DefaultConfig with 200/200/100 ms timeouts and
// RaftBind "127.0.0.1:0": the preset for tests and in-process clusters.
func FastConfig() Config {
	c := DefaultConfig()
	c.RaftBind = "127.0.0.1:0"
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	return c
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RaftBind == "" {
		c.RaftBind = d.RaftBind
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = d.LeaderLeaseTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.LogBytesSnapshot == 0 {
		c.LogBytesSnapshot = d.LogBytesSnapshot
	}
	if c.TrailingLogBytes == 0 {
		c.TrailingLogBytes = d.TrailingLogBytes
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = d.ApplyTimeout
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = d.CommitTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate returns the first problem with c, after filling zero fields
// with their defaults. Errors wrap storage.ErrInvalid.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("cluster config: %s: %w", fmt.Sprintf(format, args...), storage.ErrInvalid)
	}
	if c.DataDir == "" {
		return bad("DataDir is required (the directory for node-id, raft.db and snapshots)")
	}
	if c.FSM == nil {
		return bad("FSM is required")
	}
	if c.NodeID != "" {
		if err := validateNodeID(c.NodeID); err != nil {
			return err
		}
	}
	if c.Transport == nil {
		if err := validateHostPort("RaftBind", c.RaftBind, true); err != nil {
			return err
		}
		if c.RaftAdvertise != "" {
			if err := validateHostPort("RaftAdvertise", c.RaftAdvertise, false); err != nil {
				return err
			}
		} else if host, _, _ := net.SplitHostPort(c.RaftBind); host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			return bad("RaftBind %q listens on every address, so peers cannot be told which to dial: set RaftAdvertise to this node's reachable host:port", c.RaftBind)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatTimeout", c.HeartbeatTimeout},
		{"ElectionTimeout", c.ElectionTimeout},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout},
		{"SnapshotInterval", c.SnapshotInterval},
	} {
		if d.v < 5*time.Millisecond {
			return bad("%s %v is below raft's minimum of 5ms", d.name, d.v)
		}
	}
	if c.ApplyTimeout < 0 {
		return bad("ApplyTimeout %v is negative", c.ApplyTimeout)
	}
	if c.CommitTimeout < time.Millisecond {
		return bad("CommitTimeout %v is below raft's minimum of 1ms", c.CommitTimeout)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return bad("LeaderLeaseTimeout %v must not exceed HeartbeatTimeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return bad("ElectionTimeout %v must be at least HeartbeatTimeout %v", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	return nil
}

// validateHostPort checks a host:port; zeroPort says whether port 0 is
// allowed (it is for a bind address, not for an advertised one).
func validateHostPort(field, addr string, zeroPort bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("cluster config: %s %q: %v (write host:port, e.g. 10.0.0.5:7947): %w", field, addr, err, storage.ErrInvalid)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 && !zeroPort {
		return fmt.Errorf("cluster config: %s %q: port must be a number from 1 to 65535: %w", field, addr, storage.ErrInvalid)
	}
	return nil
}

// validateNodeID allows what is safe in logs, metrics and file names.
func validateNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("cluster config: NodeID %q must be 1 to %d characters: %w", id, maxNodeIDLen, storage.ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("cluster config: NodeID %q: use letters, digits, '-', '_' and '.': %w", id, storage.ErrInvalid)
		}
	}
	return nil
}

// raftConfig builds raft's configuration for node id.
func (c Config) raftConfig(id raft.ServerID) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = id
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.CommitTimeout = c.CommitTimeout
	// BatchApplyCh stays off: concurrent KV writes are coalesced into one
	// entry by the apply batcher (kv_batch.go), and raft still writes the
	// entries waiting on its apply channel in one BoltDB transaction.
	// With the channel buffered, a future enqueued as raft shuts down is
	// never resolved, and its waiter would hang Close.
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster config: raft rejects it: %v: %w", err, storage.ErrInvalid)
	}
	return rc, nil
}
