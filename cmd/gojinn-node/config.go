package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
)

// Config is the node's configuration: a TOML file (`agent --config`),
// overridden by GOJINN_* environment variables, overridden by flags.
// docs/operations.md lists every key with its default; keep the two in step.
type Config struct {
	// DataDir holds the Raft log, the registry snapshots, module blobs,
	// the compilation cache, TLS material and the admin token hash.
	DataDir string `toml:"data_dir"`
	// NodeName names the node in logs, status and members; default the
	// host name. A name set explicitly must be unique among the live
	// members of a cluster (a node finding its name in use exits).
	NodeName string `toml:"node_name"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`

	Edge    EdgeConfig    `toml:"edge"`
	TLS     TLSFileConfig `toml:"tls"`
	Admin   AdminConfig   `toml:"admin"`
	Raft    RaftConfig    `toml:"raft"`
	Cluster ClusterConfig `toml:"cluster"`
	Runtime RuntimeConfig `toml:"runtime"`
}

// ClusterConfig is the [cluster] table.
type ClusterConfig struct {
	Enabled           bool     `toml:"enabled"`
	PeerListen        string   `toml:"peer_listen"`
	PeerAdvertise     string   `toml:"peer_advertise"`
	GossipBind        string   `toml:"gossip_bind"`
	GossipAdvertise   string   `toml:"gossip_advertise"`
	Profile           string   `toml:"profile"`
	Join              []string `toml:"join"`
	JoinToken         string   `toml:"join_token"`
	JoinTokenFile     string   `toml:"join_token_file"`
	BootstrapExpect   int      `toml:"bootstrap_expect"`
	JoinRetryMax      int      `toml:"join_retry_max"`
	GossipKey         string   `toml:"gossip_key"`
	GossipKeys        []string `toml:"gossip_keys"`
	Region            string   `toml:"region"`
	MaxVoters         int      `toml:"max_voters"`
	DeadServerTimeout duration `toml:"dead_server_timeout"`
	LeaveOnShutdown   bool     `toml:"leave_on_shutdown"`
}

// EdgeConfig is the [edge] table.
type EdgeConfig struct {
	HTTPS                string   `toml:"https"`
	HTTP                 string   `toml:"http"`
	HTTPMode             string   `toml:"http_mode"`
	HTTP3                bool     `toml:"http3"`
	MaxHeaderBytes       int      `toml:"max_header_bytes"`
	MaxBodyBytes         int64    `toml:"max_body_bytes"`
	MaxBodyMemory        int64    `toml:"max_body_memory"`
	ReadHeaderTimeout    duration `toml:"read_header_timeout"`
	ReadTimeout          duration `toml:"read_timeout"`
	WriteTimeout         duration `toml:"write_timeout"`
	IdleTimeout          duration `toml:"idle_timeout"`
	MaxConns             int      `toml:"max_conns"`
	MaxConcurrentStreams int      `toml:"max_concurrent_streams"`
	ShutdownGrace        duration `toml:"shutdown_grace"`
	ShutdownDelay        duration `toml:"shutdown_delay"`
	DevErrors            bool     `toml:"dev_errors"`
	AccessLog            bool     `toml:"access_log"`
}

// TLSFileConfig is the [tls] table.
type TLSFileConfig struct {
	Mode                    string   `toml:"mode"`
	Names                   []string `toml:"names"`
	Email                   string   `toml:"email"`
	CA                      string   `toml:"ca"`
	CARoot                  string   `toml:"ca_root"`
	OnDemand                bool     `toml:"on_demand"`
	OnDemandWildcards       bool     `toml:"on_demand_wildcards"`
	DisableHTTPChallenge    bool     `toml:"disable_http_challenge"`
	DisableTLSALPNChallenge bool     `toml:"disable_tls_alpn_challenge"`
	CertFile                string   `toml:"cert_file"`
	KeyFile                 string   `toml:"key_file"`
}

// AdminConfig is the [admin] table.
type AdminConfig struct {
	Listen         string `toml:"listen"`
	MaxModuleBytes int64  `toml:"max_module_bytes"`
}

// RaftConfig is the [raft] table.
type RaftConfig struct {
	Bind      string `toml:"bind"`
	Advertise string `toml:"advertise"`
}

// RuntimeConfig is the [runtime] table.
type RuntimeConfig struct {
	CompiledIdleTimeout   duration `toml:"compiled_idle_timeout"`
	PoolIdleTimeout       duration `toml:"pool_idle_timeout"`
	MaxConcurrentCompiles int      `toml:"max_concurrent_compiles"`
	LogRate               int      `toml:"log_rate"`
	LogBurst              int      `toml:"log_burst"`
	MaxGuestMemory        int64    `toml:"max_guest_memory"`
}

// duration reads "10s"-style strings from TOML and environment variables.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. \"500ms\", \"10s\", \"2m\")", b)
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:  "/var/lib/gojinn",
		NodeName: host,
		LogLevel: "info",
		Edge: EdgeConfig{
			HTTPS: ":443", HTTP: ":80", HTTPMode: "redirect", HTTP3: true,
			MaxHeaderBytes: 64 << 10, MaxBodyBytes: 10 << 20, MaxBodyMemory: edge.DefaultMaxBodyMemory,
			ReadHeaderTimeout: duration(10 * time.Second), ReadTimeout: duration(60 * time.Second),
			WriteTimeout: duration(60 * time.Second), IdleTimeout: duration(120 * time.Second),
			MaxConns: 10000, MaxConcurrentStreams: 250, ShutdownGrace: duration(10 * time.Second),
		},
		TLS:   TLSFileConfig{Mode: "acme"},
		Admin: AdminConfig{Listen: "127.0.0.1:9090", MaxModuleBytes: 64 << 20},
		Raft:  RaftConfig{Bind: "127.0.0.1:7947"},
		Cluster: ClusterConfig{
			PeerListen: ":7948", GossipBind: ":7946", Profile: "lan",
			MaxVoters: 3, DeadServerTimeout: duration(30 * time.Second),
		},
		Runtime: RuntimeConfig{
			CompiledIdleTimeout: duration(10 * time.Minute), PoolIdleTimeout: duration(60 * time.Second),
			MaxConcurrentCompiles: 1, LogRate: 100, LogBurst: 1000,
		},
	}
}

// nodeName is node_name, or the host name when it is empty (as the
// reference file in docs/operations.md writes it): every log line names
// the node.
func (c Config) nodeName() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	host, _ := os.Hostname()
	return host
}

// nodeNameFromHost reports a node_name that is the host name (the
// default): shown, but not required to be unique, as distinct machines
// may share a host name.
func (c Config) nodeNameFromHost() bool {
	host, _ := os.Hostname()
	return c.NodeName == "" || c.NodeName == host
}

// DevConfig is what `gojinn-node dev` runs: everything on 127.0.0.1, the
// internal CA, plain HTTP serving functions, reasons in error bodies.
func DevConfig() Config {
	c := DefaultConfig()
	c.DataDir = ".gojinn"
	c.Edge.HTTPS = "127.0.0.1:8443"
	c.Edge.HTTP = "127.0.0.1:8080"
	c.Edge.HTTPMode = "serve"
	c.Edge.DevErrors = true
	c.Edge.AccessLog = true
	c.Edge.ShutdownGrace = duration(3 * time.Second)
	c.TLS = TLSFileConfig{Mode: "internal"}
	c.Raft.Bind = "127.0.0.1:0"
	return c
}

// loadConfigFile reads a TOML file over base. Unknown keys are errors, so
// a typo never silently falls back to a default.
func loadConfigFile(path string, base Config) (Config, error) {
	c := base
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			key := ""
			if perr.LastKey != "" {
				key = "key " + perr.LastKey + ": "
			}
			return c, fmt.Errorf("config %s:%d:%d: %s%s", path, perr.Position.Line, perr.Position.Col, key, perr.Message)
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("config %s: unknown key %s (docs/operations.md lists the keys)", path, strings.Join(keys, ", "))
	}
	return c, nil
}

// applyEnv overrides c from GOJINN_<TABLE>_<KEY> variables (upper-case,
// e.g. GOJINN_EDGE_HTTPS, GOJINN_DATA_DIR, GOJINN_TLS_NAMES=a.com,b.com).
func applyEnv(c *Config, lookup func(string) (string, bool)) error {
	return walkConfig(reflect.ValueOf(c).Elem(), "", func(key string, v reflect.Value) error {
		name := envName(key)
		s, ok := lookup(name)
		if !ok {
			return nil
		}
		if err := setValue(v, s); err != nil {
			return fmt.Errorf("env %s (config key %s): %w", name, key, err)
		}
		return nil
	})
}

// envName is the environment variable that sets the config key.
func envName(key string) string {
	return "GOJINN_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// clientEnv are the GOJINN_* variables that are not config keys: the
// CLI's (GOJINN_ADDR, GOJINN_TOKEN) and the config file's path.
var clientEnv = []string{"GOJINN_ADDR", "GOJINN_TOKEN", "GOJINN_CONFIG"}

// unknownEnv returns the GOJINN_* names in environ (KEY=VALUE entries)
// that set no config key: mistyped ones, which would otherwise be ignored
// without a word.
func unknownEnv(environ []string) []string {
	known := map[string]bool{}
	for _, n := range clientEnv {
		known[n] = true
	}
	for _, n := range configEnv() {
		known[n] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GOJINN_") && !known[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// configEnv lists the variables of the config keys (GOJINN_EDGE_HTTPS...).
func configEnv() []string {
	var names []string
	var c Config
	_ = walkConfig(reflect.ValueOf(&c).Elem(), "", func(key string, _ reflect.Value) error {
		names = append(names, envName(key))
		return nil
	})
	return append(names, "GOJINN_CONFIG")
}

// configEnvSet returns the config variables set in environ, sorted: `dev`
// reads none of them, and says so.
func configEnvSet(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(configEnv(), name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// envSource adds to a "config key K: ..." error the variable that set K,
// when one did: the message then points at the environment rather than a
// file that says otherwise.
func envSource(err error, lookup func(string) (string, bool)) error {
	key, _, ok := strings.Cut(strings.TrimPrefix(err.Error(), "config key "), ":")
	if !ok || !strings.HasPrefix(err.Error(), "config key ") {
		return err
	}
	if _, set := lookup(envName(key)); !set {
		return err
	}
	return fmt.Errorf("%w (%s is set in the environment)", err, envName(key))
}

// walkConfig calls f for every leaf field with its dotted TOML key.
func walkConfig(v reflect.Value, prefix string, f func(key string, v reflect.Value) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := walkConfig(fv, key, f); err != nil {
				return err
			}
			continue
		}
		if err := f(key, fv); err != nil {
			return err
		}
	}
	return nil
}

func setValue(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported kind %s", v.Kind())
	}
	return nil
}

// maxShutdownDelay bounds edge.shutdown_delay: a load balancer notices a
// failing readiness check within seconds, and the delay cannot be cut
// short.
const maxShutdownDelay = time.Minute

// Validate returns the first problem with c, naming the key.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config key %s: %s", key, fmt.Sprintf(format, args...))
	}
	if c.DataDir == "" {
		return bad("data_dir", "is empty; set a directory the node may write")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	addr := func(key, v string, optional bool) error {
		if v == "" && optional {
			return nil
		}
		_, port, err := net.SplitHostPort(v)
		if err != nil || port == "" {
			return bad(key, "%q is not HOST:PORT (e.g. \":443\" or \"127.0.0.1:8080\")", v)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
			return bad(key, "%q: the port %q is not a number from 0 to 65535", v, port)
		}
		return nil
	}
	if err := addr("edge.https", c.Edge.HTTPS, true); err != nil {
		return err
	}
	if err := addr("edge.http", c.Edge.HTTP, true); err != nil {
		return err
	}
	if c.Edge.HTTPS == "" && c.Edge.HTTP == "" {
		return bad("edge.https", "both edge.https and edge.http are empty; the node would serve nothing")
	}
	switch c.Edge.HTTPMode {
	case "redirect", "serve":
	default:
		return bad("edge.http_mode", "%q is not redirect or serve", c.Edge.HTTPMode)
	}
	if c.Edge.HTTPMode == "redirect" && c.Edge.HTTPS == "" {
		return bad("edge.http_mode", "redirect needs edge.https; use serve for a plain-HTTP-only node")
	}
	if c.TLS.Mode == "acme" && c.Edge.HTTP == "" && !c.TLS.DisableHTTPChallenge {
		return bad("tls.disable_http_challenge", "ACME HTTP-01 is answered on the plain-HTTP listener and edge.http is empty: set edge.http, or tls.disable_http_challenge = true to use TLS-ALPN-01 on edge.https alone")
	}
	for key, n := range map[string]int64{
		"edge.max_header_bytes": int64(c.Edge.MaxHeaderBytes), "edge.max_body_bytes": c.Edge.MaxBodyBytes,
		"edge.max_conns": int64(c.Edge.MaxConns), "edge.max_concurrent_streams": int64(c.Edge.MaxConcurrentStreams),
		"admin.max_module_bytes": c.Admin.MaxModuleBytes, "runtime.max_concurrent_compiles": int64(c.Runtime.MaxConcurrentCompiles),
	} {
		if n <= 0 {
			return bad(key, "must be positive, got %d", n)
		}
	}
	if c.Edge.MaxBodyMemory <= c.Edge.MaxBodyBytes {
		return bad("edge.max_body_memory", "%d is not above edge.max_body_bytes (%d): no body of the largest size allowed could be read; raise it (it bounds the request bodies held at once, over all requests)",
			c.Edge.MaxBodyMemory, c.Edge.MaxBodyBytes)
	}
	for key, d := range map[string]duration{
		"edge.read_header_timeout": c.Edge.ReadHeaderTimeout, "edge.read_timeout": c.Edge.ReadTimeout,
		"edge.write_timeout": c.Edge.WriteTimeout, "edge.idle_timeout": c.Edge.IdleTimeout,
		"edge.shutdown_grace": c.Edge.ShutdownGrace, "runtime.compiled_idle_timeout": c.Runtime.CompiledIdleTimeout,
		"runtime.pool_idle_timeout": c.Runtime.PoolIdleTimeout,
	} {
		if d <= 0 {
			return bad(key, "must be a positive duration, got %s", time.Duration(d))
		}
	}
	if d := time.Duration(c.Edge.ShutdownDelay); d < 0 || d > maxShutdownDelay {
		return bad("edge.shutdown_delay", "%s: use 0 (stop at once) up to %s", d, maxShutdownDelay)
	}
	if c.Runtime.LogRate == 0 {
		return bad("runtime.log_rate", "is 0; set lines per second per function, or -1 for no limit")
	}
	if m := c.Runtime.MaxGuestMemory; m > 0 && m < 16<<20 {
		return bad("runtime.max_guest_memory", "%d bytes cannot hold even one small guest: use at least 16 MiB (16777216), 0 for half the machine's memory, or -1 for no bound", m)
	}
	if c.Runtime.LogBurst <= 0 {
		return bad("runtime.log_burst", "must be positive, got %d", c.Runtime.LogBurst)
	}
	if c.Edge.HTTPS != "" && c.TLS.Mode == "" {
		// The edge reads "" as internal, a self-signed CA: never that by
		// accident (an empty GOJINN_TLS_MODE) in production.
		return bad("tls.mode", "is empty: set acme, internal or files")
	}
	if c.Edge.HTTPS != "" {
		// Without names or on-demand the node would have no certificate
		// to obtain: the node's concern, not the edge's, which learns the
		// names later (ManageSync).
		if c.TLS.Mode == "acme" && len(c.TLS.Names) == 0 && !c.TLS.OnDemand {
			return bad("tls.names", "acme needs at least one name, or tls.on_demand = true")
		}
		if c.TLS.OnDemandWildcards && (c.TLS.Mode != "acme" || !c.TLS.OnDemand) {
			return bad("tls.on_demand_wildcards", "only used with tls.mode = \"acme\" and tls.on_demand = true; remove it")
		}
		if _, err := c.edgeTLS(); err != nil {
			return err
		}
	}
	if err := addr("admin.listen", c.Admin.Listen, false); err != nil {
		return err
	}
	if err := addr("raft.bind", c.Raft.Bind, false); err != nil {
		return err
	}
	if err := addr("raft.advertise", c.Raft.Advertise, true); err != nil {
		return err
	}
	if host, _, _ := net.SplitHostPort(c.Raft.Bind); c.Raft.Advertise == "" && unspecifiedHost(host) {
		return bad("raft.advertise", "is empty, and raft.bind %q listens on every address, so Raft cannot tell peers which one to dial: set raft.advertise to IP:PORT other nodes reach this one at (or pass --advertise IP), or bind one address", c.Raft.Bind)
	}
	if err := c.Cluster.validate(bad, addr); err != nil {
		return err
	}
	return c.checkListenerPorts(bad)
}

// checkListenerPorts refuses two of the node's listeners on one port they
// cannot share (one protocol, and the same or an unspecified host): the
// second would fail to listen once the node had written its data
// directory, with an "address already in use" that points at another
// process. Port 0 (any free port) never clashes.
func (c Config) checkListenerPorts(bad func(key, format string, args ...any) error) error {
	type listener struct {
		key, addr string
		tcp, udp  bool
	}
	ls := []listener{
		{"edge.https", c.Edge.HTTPS, true, true}, // HTTP/3 on UDP
		{"edge.http", c.Edge.HTTP, true, false},
		{"admin.listen", c.Admin.Listen, true, false},
		{"raft.bind", c.Raft.Bind, true, false},
	}
	if c.Cluster.Enabled {
		ls = append(ls, listener{"cluster.peer_listen", c.Cluster.PeerListen, true, false},
			listener{"cluster.gossip_bind", c.Cluster.GossipBind, true, true})
	}
	for i, a := range ls {
		ah, ap, err := net.SplitHostPort(a.addr)
		if err != nil || ap == "0" {
			continue
		}
		for _, b := range ls[i+1:] {
			bh, bp, err := net.SplitHostPort(b.addr)
			shared := a.tcp && b.tcp || a.udp && b.udp // a protocol both use
			if err != nil || bp != ap || !shared {
				continue
			}
			if ah == bh || unspecifiedHost(ah) || unspecifiedHost(bh) {
				return bad(b.key, "%q uses the port of %s (%q); give each listener its own port", b.addr, a.key, a.addr)
			}
		}
	}
	return nil
}

func (c ClusterConfig) validate(bad func(key, format string, args ...any) error, addr func(key, v string, optional bool) error) error {
	if !c.Enabled {
		// Keys that only mean something to a cluster member are refused,
		// not ignored: the operator meant to run one.
		for _, k := range []struct {
			key string
			set bool
		}{
			{"cluster.join", len(c.Join) > 0}, {"cluster.bootstrap_expect", c.BootstrapExpect != 0},
			{"cluster.join_token", c.JoinToken != ""}, {"cluster.join_token_file", c.JoinTokenFile != ""},
		} {
			if k.set {
				return bad(k.key, "is set but cluster.enabled is false; set cluster.enabled = true (--cluster) or remove it")
			}
		}
		// The other keys have defaults and are checked all the same: a
		// configuration staged now must not fail on the day clustering
		// is switched on.
	}
	for _, k := range []struct {
		key, v   string
		optional bool
	}{
		{"cluster.peer_listen", c.PeerListen, false}, {"cluster.peer_advertise", c.PeerAdvertise, true},
		{"cluster.gossip_bind", c.GossipBind, false}, {"cluster.gossip_advertise", c.GossipAdvertise, true},
	} {
		if err := addr(k.key, k.v, k.optional); err != nil {
			return err
		}
	}
	if c.GossipAdvertise != "" {
		host, port, _ := net.SplitHostPort(c.GossipAdvertise)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || port == "0" {
			return bad("cluster.gossip_advertise", "%q is not IP:PORT other nodes can reach (gossip does not resolve names; not 0.0.0.0, not port 0)", c.GossipAdvertise)
		}
	}
	if c.JoinToken != "" {
		// Parsed here so that a mistyped token stops the node before it
		// writes anything; the error never echoes the token.
		if _, err := cluster.ParseJoinToken(c.JoinToken); err != nil {
			return bad("cluster.join_token", "%v", err)
		}
	}
	for i, j := range c.Join {
		if err := addr(fmt.Sprintf("cluster.join[%d]", i), j, false); err != nil {
			return err
		}
	}
	switch c.Profile {
	case "lan", "wan", "local":
	default:
		return bad("cluster.profile", "%q is not lan, wan or local", c.Profile)
	}
	if c.MaxVoters != 1 && c.MaxVoters != 3 && c.MaxVoters != 5 {
		return bad("cluster.max_voters", "%d: use 3 (survives one failure) or 5 (two); 1 for a test cluster", c.MaxVoters)
	}
	if c.DeadServerTimeout <= 0 {
		return bad("cluster.dead_server_timeout", "must be a positive duration")
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > c.MaxVoters {
		return bad("cluster.bootstrap_expect", "%d: use 0 (bootstrap alone) up to cluster.max_voters (%d)", c.BootstrapExpect, c.MaxVoters)
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		return bad("cluster.join_token_file", "set either cluster.join_token or cluster.join_token_file, not both")
	}
	return c.validateGossipKeys(bad)
}

// validateGossipKeys checks the keyring cluster.gossip_key and
// cluster.gossip_keys make (gossip_key first, when set): every key parses
// and appears once. Errors name the key by its index, never its value.
func (c ClusterConfig) validateGossipKeys(bad func(key, format string, args ...any) error) error {
	var ring [][]byte
	var names []string
	add := func(key, s string) error {
		k, err := cluster.ParseGossipKey(s)
		if err != nil {
			return bad(key, "%v", err) // the error names gojinn-node keygen
		}
		for j, prev := range ring {
			if bytes.Equal(prev, k) {
				return bad(key, "is the same key as %s; list every key once (the keyring is cluster.gossip_key, when set, then cluster.gossip_keys; the first one encrypts)", names[j])
			}
		}
		ring, names = append(ring, k), append(names, key)
		return nil
	}
	if c.GossipKey != "" {
		if err := add("cluster.gossip_key", c.GossipKey); err != nil {
			return err
		}
	}
	for i, s := range c.GossipKeys {
		if err := add(fmt.Sprintf("cluster.gossip_keys[%d]", i), s); err != nil {
			return err
		}
	}
	return nil
}

// unspecifiedHost reports a listen host that means every address: empty,
// 0.0.0.0 or ::.
func unspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// applyAdvertise is the --advertise flag: raft.advertise,
// cluster.peer_advertise and cluster.gossip_advertise that are still empty
// become host with the port of raft.bind, cluster.peer_listen and
// cluster.gossip_bind respectively. A key already set (file, environment)
// wins. host must be an IP address, because gossip does not resolve
// names, and each listener it applies to needs a fixed port.
func (c *Config) applyAdvertise(host string) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config key %s: %s", key, fmt.Sprintf(format, args...))
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("flag --advertise: %q is not one IP address other nodes can reach (no port, no DNS name, not 0.0.0.0); set raft.advertise, cluster.peer_advertise and cluster.gossip_advertise for anything else", host)
	}
	for _, f := range []struct {
		adv        *string
		advKey     string
		bind, bKey string
	}{
		{&c.Raft.Advertise, "raft.advertise", c.Raft.Bind, "raft.bind"},
		{&c.Cluster.PeerAdvertise, "cluster.peer_advertise", c.Cluster.PeerListen, "cluster.peer_listen"},
		{&c.Cluster.GossipAdvertise, "cluster.gossip_advertise", c.Cluster.GossipBind, "cluster.gossip_bind"},
	} {
		if *f.adv != "" {
			continue
		}
		_, port, err := net.SplitHostPort(f.bind)
		if err != nil || port == "" {
			return bad(f.bKey, "%q is not HOST:PORT (e.g. \":7947\")", f.bind)
		}
		if port == "0" {
			return bad(f.bKey, "port 0 cannot be advertised with --advertise: set a fixed port, or set %s", f.advKey)
		}
		*f.adv = net.JoinHostPort(ip.String(), port)
	}
	return nil
}
