package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gojinn/gojinn/storage"
)

// Defaults of MembershipConfig.
const (
	// DefaultGossipBind is where gossip listens (UDP and TCP) when
	// MembershipConfig.BindAddr is empty.
	DefaultGossipBind = "0.0.0.0:7946"
	// defaultGossipPort is the port of a BindAddr given as a bare IP.
	defaultGossipPort = 7946
	// DefaultRetryInterval is the first wait between join attempts; it
	// doubles after every failure up to MaxRetryInterval.
	DefaultRetryInterval = time.Second
	// MaxRetryInterval caps the join backoff.
	MaxRetryInterval = 30 * time.Second
	// DefaultDeadNodeReclaimTime is how long after a member is declared
	// dead its name may come back from another address.
	DefaultDeadNodeReclaimTime = 30 * time.Second
	// DefaultDeadMemberReapTime is how long a dead member stays listed
	// (as Serf's reconnect timeout): a day to notice and act on a node
	// that crashed, after which the list no longer carries it.
	DefaultDeadMemberReapTime = 24 * time.Hour
	// DefaultLeftMemberReapTime is how long a member that left gracefully
	// stays listed (as "left"): long enough to see the leave worked, and
	// for the agent to forget its address; it is not coming back.
	DefaultLeftMemberReapTime = 5 * time.Minute
	// updateMetaTimeout bounds how long UpdateMeta waits for the
	// broadcast of the new meta to go out.
	updateMetaTimeout = 5 * time.Second
)

// Gossip timing profiles of MembershipConfig.Profile.
const (
	// ProfileLAN uses memberlist.DefaultLANConfig: 1 s probes, 200 ms
	// gossip; for nodes in one region or data center.
	ProfileLAN = "lan"
	// ProfileWAN uses memberlist.DefaultWANConfig: 5 s probes, 3 s probe
	// timeout; for clusters spread across regions.
	ProfileWAN = "wan"
	// ProfileLocal is for tests and single-host clusters: loopback
	// timings (300 ms probes, 50 ms gossip, 1 s push/pull, 1 s TCP
	// timeout), so joins, leaves and failure detection take a second or
	// two.
	ProfileLocal = "local"
)

// MembershipConfig configures gossip membership. Zero fields take the
// defaults stated on each; NodeName is required.
type MembershipConfig struct {
	// NodeName is this node's unique name in the cluster. Required;
	// gojinn-node passes its Raft node ID, so gossip and Raft name a node
	// alike. Letters, digits, '-', '_' and '.', at most 128 characters.
	NodeName string
	// BindAddr is the host:port gossip listens on, UDP and TCP. Default
	// DefaultGossipBind ("0.0.0.0:7946"). Port 0 picks a free port and
	// advertises it (tests).
	BindAddr string
	// AdvertiseAddr is the IP (or IP:port) other nodes use to reach this
	// one. Default: the bound IP, or for 0.0.0.0 the first private IP of
	// the host; the port defaults to the bound port. Set it on a VPS
	// whose public address is not a private one on a local interface:
	// memberlist otherwise fails with "no private IP address found".
	AdvertiseAddr string
	// Profile picks memberlist's timings: ProfileLAN (default),
	// ProfileWAN or ProfileLocal.
	Profile string
	// SecretKey is the gossip encryption key (16, 24 or 32 bytes; see
	// GenerateGossipKey and ParseGossipKey). Every node must share it.
	// Nil leaves gossip unencrypted, which is logged as a warning.
	// Encryption cannot be switched on or off while running.
	SecretKey []byte
	// SecretKeys are further keys installed in the keyring beside
	// SecretKey: gossip decrypts with any of them but encrypts with
	// SecretKey only. Default none. They need SecretKey and must differ
	// from it and from each other. A node restarted with [old, new], then
	// [new, old], then [new] rotates the key while every node can read
	// every other (docs/operations.md).
	SecretKeys [][]byte
	// Meta is what this node announces (role, region, version, Raft and
	// API addresses). Encoded it must fit 512 bytes (ErrMetaTooLarge).
	Meta NodeMeta
	// NameUnchecked: Meta.Name is shown, never checked for clashes with
	// other live members (a name derived from the host name, which
	// distinct machines may share).
	NameUnchecked bool
	// Join lists seed nodes: "host:port", "ip" or a DNS name (every
	// address it resolves to is tried). A seed without a port uses this
	// node's gossip port. Empty: this node starts a cluster of its own
	// and waits for others to join it.
	Join []string
	// RetryMax is how many join attempts StartMembership makes before it
	// gives up. Default 0: retry until the join succeeds, the context
	// given to StartMembership ends, or Leave or Shutdown is called.
	RetryMax int
	// RetryInterval is the wait after the first failed join attempt; it
	// doubles after every further failure, capped at MaxRetryInterval
	// (30 s). Default DefaultRetryInterval (1 s).
	RetryInterval time.Duration
	// DeadNodeReclaimTime is how long after a member is declared dead
	// another address may take its name: a node that restarts under its
	// name with a new IP or port is refused until then. Default
	// DefaultDeadNodeReclaimTime (30 s). A node that left gracefully can
	// come back from a new address at once.
	DeadNodeReclaimTime time.Duration
	// DeadMemberReapTime is how long Members keeps listing a member after
	// it was declared dead. Default DefaultDeadMemberReapTime (24 h). A
	// member that comes back alive is listed again at once.
	DeadMemberReapTime time.Duration
	// LeftMemberReapTime is how long Members keeps listing a member after
	// it left gracefully. Default DefaultLeftMemberReapTime (5 min).
	LeftMemberReapTime time.Duration
	// Logger receives membership and memberlist logs (component
	// "memberlist" for the latter). Default: discard.
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (c MembershipConfig) withDefaults() MembershipConfig {
	if c.BindAddr == "" {
		c.BindAddr = DefaultGossipBind
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.DeadNodeReclaimTime == 0 {
		c.DeadNodeReclaimTime = DefaultDeadNodeReclaimTime
	}
	if c.DeadMemberReapTime == 0 {
		c.DeadMemberReapTime = DefaultDeadMemberReapTime
	}
	if c.LeftMemberReapTime == 0 {
		c.LeftMemberReapTime = DefaultLeftMemberReapTime
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate returns the first problem with c, after filling zero fields
// with their defaults. Errors wrap storage.ErrInvalid (and ErrMetaTooLarge
// for an oversized Meta).
func (c MembershipConfig) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("membership config: %s: %w", fmt.Sprintf(format, args...), storage.ErrInvalid)
	}
	if c.NodeName == "" {
		return bad("NodeName is required (gojinn-node uses its Raft node ID)")
	}
	if err := validateNodeID(c.NodeName); err != nil {
		return bad("NodeName %q: use 1 to %d letters, digits, '-', '_' or '.'", c.NodeName, maxNodeIDLen)
	}
	host, _, err := splitGossipAddr("BindAddr", c.BindAddr, true)
	if err != nil {
		return err
	}
	if host != "" && net.ParseIP(host) == nil {
		return bad("BindAddr %q: the host must be an IP address (0.0.0.0 for every interface)", c.BindAddr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && host != "0.0.0.0" && c.AdvertiseAddr == "" {
		// memberlist picks a private IP to advertise only for 0.0.0.0.
		return bad("BindAddr %q listens on every IPv6 address, so peers cannot be told which to dial: set AdvertiseAddr", c.BindAddr)
	}
	if c.AdvertiseAddr != "" {
		ip, _, err := splitGossipAddr("AdvertiseAddr", c.AdvertiseAddr, false)
		if err != nil {
			return err
		}
		if p := net.ParseIP(ip); p == nil || p.IsUnspecified() {
			return bad("AdvertiseAddr %q must be one IP address other nodes can reach (not a DNS name, not 0.0.0.0)", c.AdvertiseAddr)
		}
	}
	switch c.Profile {
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return bad("Profile %q: use %q, %q or %q", c.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	if c.SecretKey != nil {
		if err := validateGossipKey(c.SecretKey); err != nil {
			return fmt.Errorf("membership config: SecretKey: %w", err)
		}
	}
	if len(c.SecretKeys) > 0 && c.SecretKey == nil {
		return bad("SecretKeys needs SecretKey, the key gossip encrypts with")
	}
	for i, k := range c.SecretKeys {
		if err := validateGossipKey(k); err != nil {
			return fmt.Errorf("membership config: SecretKeys[%d]: %w", i, err)
		}
		if bytes.Equal(k, c.SecretKey) {
			return bad("SecretKeys[%d] is SecretKey again (fingerprint %s)", i, keyFingerprint(k))
		}
		for j := range i {
			if bytes.Equal(k, c.SecretKeys[j]) {
				return bad("SecretKeys[%d] is SecretKeys[%d] again (fingerprint %s)", i, j, keyFingerprint(k))
			}
		}
	}
	if err := validateMeta(c.Meta); err != nil {
		return fmt.Errorf("membership config: Meta: %w", err)
	}
	for _, seed := range c.Join {
		if err := validateSeed(seed); err != nil {
			return err
		}
	}
	if c.RetryMax < 0 {
		return bad("RetryMax %d is negative (0 retries until the join succeeds)", c.RetryMax)
	}
	if c.RetryInterval < 0 {
		return bad("RetryInterval %v is negative", c.RetryInterval)
	}
	if c.DeadNodeReclaimTime < 0 {
		return bad("DeadNodeReclaimTime %v is negative", c.DeadNodeReclaimTime)
	}
	if c.DeadMemberReapTime < 0 || c.LeftMemberReapTime < 0 {
		return bad("DeadMemberReapTime %v and LeftMemberReapTime %v must not be negative (0: the default)", c.DeadMemberReapTime, c.LeftMemberReapTime)
	}
	return nil
}

// splitGossipAddr splits "host:port" or a bare IP (port -1 then).
// zeroPort allows port 0 when a port is given.
func splitGossipAddr(field, addr string, zeroPort bool) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if net.ParseIP(strings.Trim(addr, "[]")) != nil {
			return strings.Trim(addr, "[]"), -1, nil // a bare IP
		}
		return "", 0, fmt.Errorf("membership config: %s %q: %v (write ip:port, e.g. 10.0.0.5:7946): %w", field, addr, err, storage.ErrInvalid)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 && !zeroPort {
		return "", 0, fmt.Errorf("membership config: %s %q: port must be a number from 1 to 65535: %w", field, addr, storage.ErrInvalid)
	}
	return host, int(p), nil
}

// validateSeed checks the syntax of a Join entry; memberlist resolves it.
func validateSeed(seed string) error {
	bad := fmt.Errorf("membership config: Join entry %q: write host:port, an IP or a DNS name: %w", seed, storage.ErrInvalid)
	if seed == "" || strings.ContainsAny(seed, " \t\r\n/") {
		return bad
	}
	if net.ParseIP(strings.Trim(seed, "[]")) != nil {
		return nil
	}
	if strings.Contains(seed, ":") {
		host, port, err := net.SplitHostPort(seed)
		if err != nil || host == "" {
			return bad
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return fmt.Errorf("membership config: Join entry %q: port must be a number from 1 to 65535: %w", seed, storage.ErrInvalid)
		}
	}
	return nil
}

// memberlistConfig builds memberlist's configuration for c (validated,
// with defaults).
func (c MembershipConfig) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 300 * time.Millisecond
		mc.ProbeTimeout = 200 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		// DefaultLocalConfig's RetransmitMult of 2 lets a join's alive
		// message die out before it reaches every node of five, leaving
		// push/pull to repair it; LAN's 4 does not.
		mc.RetransmitMult = 4
		mc.PushPullInterval = time.Second
		mc.GossipToTheDeadTime = 5 * time.Second
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = c.NodeName
	host, port, err := splitGossipAddr("BindAddr", c.BindAddr, true)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port < 0 {
		port = defaultGossipPort
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if c.AdvertiseAddr != "" {
		ip, aport, err := splitGossipAddr("AdvertiseAddr", c.AdvertiseAddr, false)
		if err != nil {
			return nil, err
		}
		mc.AdvertiseAddr = ip
		if aport > 0 {
			mc.AdvertisePort = aport
		}
	}
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	if c.SecretKey != nil {
		// memberlist keeps the slices: give it copies.
		kr, err := memberlist.NewKeyring(cloneKeys(c.SecretKeys), bytes.Clone(c.SecretKey))
		if err != nil {
			return nil, fmt.Errorf("membership: keyring: %w", err)
		}
		mc.Keyring = kr
	}
	return mc, nil
}
