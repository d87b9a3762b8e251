package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

func TestConfigDefaultsValidate(t *testing.T) {
	dev := DevConfig()
	if err := dev.Validate(); err != nil {
		t.Fatalf("dev defaults: %v", err)
	}
	prod := DefaultConfig()
	// acme needs names (or on-demand) and the CA account's contact
	// address: the things the production defaults cannot know.
	if err := prod.Validate(); err == nil || !strings.Contains(err.Error(), "tls.names") {
		t.Fatalf("production defaults without names: %v", err)
	}
	prod.TLS.Names = []string{"example.com"}
	if err := prod.Validate(); err == nil || !strings.Contains(err.Error(), "tls.email") {
		t.Fatalf("production defaults without an email: %v", err)
	}
	prod.TLS.Email = "ops@example.com"
	if err := prod.Validate(); err != nil {
		t.Fatalf("production defaults with a name and an email: %v", err)
	}
	prod.Cluster.Enabled, prod.Raft.Advertise = true, "10.0.0.1:7947"
	if err := prod.Validate(); err != nil {
		t.Fatalf("production defaults of a cluster member: %v", err)
	}
	// One port on two hosts, or for two protocols, is no clash.
	prod.Edge.HTTPS, prod.Admin.Listen = "10.0.0.1:9443", "127.0.0.1:9443"
	if err := prod.Validate(); err != nil {
		t.Fatalf("admin and HTTPS on one port of two hosts: %v", err)
	}
}

// Every invalid value is refused with the key that holds it.
func TestConfigValidateTable(t *testing.T) {
	for _, c := range []struct {
		key string
		mod func(*Config)
	}{
		{"data_dir", func(c *Config) { c.DataDir = "" }},
		{"log_level", func(c *Config) { c.LogLevel = "verbose" }},
		{"edge.https", func(c *Config) { c.Edge.HTTPS = "443" }},
		{"edge.http", func(c *Config) { c.Edge.HTTP = "localhost" }},
		{"edge.https", func(c *Config) { c.Edge.HTTPS, c.Edge.HTTP = "", "" }},
		{"edge.http_mode", func(c *Config) { c.Edge.HTTPMode = "teleport" }},
		{"edge.http_mode", func(c *Config) { c.Edge.HTTPS, c.Edge.HTTPMode = "", "redirect" }},
		{"edge.max_header_bytes", func(c *Config) { c.Edge.MaxHeaderBytes = 0 }},
		{"edge.max_body_bytes", func(c *Config) { c.Edge.MaxBodyBytes = -1 }},
		{"edge.max_body_memory", func(c *Config) { c.Edge.MaxBodyMemory = 1 << 20 }},
		{"edge.max_conns", func(c *Config) { c.Edge.MaxConns = 0 }},
		{"edge.max_concurrent_streams", func(c *Config) { c.Edge.MaxConcurrentStreams = -5 }},
		{"edge.read_timeout", func(c *Config) { c.Edge.ReadTimeout = 0 }},
		{"edge.shutdown_grace", func(c *Config) { c.Edge.ShutdownGrace = duration(-time.Second) }},
		{"tls.mode", func(c *Config) { c.TLS.Mode = "letsencrypt" }},
		{"tls.mode", func(c *Config) { c.TLS.Mode = "" }},
		{"tls.disable_http_challenge", func(c *Config) {
			c.Edge.HTTP, c.Edge.HTTPMode = "", "serve"
			c.TLS.Mode, c.TLS.Names, c.TLS.Email = "acme", []string{"example.com"}, "ops@example.com"
		}},
		{"tls.cert_file", func(c *Config) { c.TLS.Mode = "files" }},
		{"tls.names", func(c *Config) { c.TLS.Mode = "acme"; c.TLS.Names = nil }},
		{"tls.email", func(c *Config) { c.TLS.Mode, c.TLS.Names = "acme", []string{"example.com"} }},
		{"tls.names", func(c *Config) {
			c.TLS.Mode, c.TLS.Names, c.TLS.Email = "acme", []string{"https://foo.example.com/"}, "ops@example.com"
		}},
		{"tls.names", func(c *Config) {
			c.TLS.Mode, c.TLS.Names, c.TLS.Email = "acme", []string{"*.example.com"}, "ops@example.com"
		}},
		{"tls.email", func(c *Config) { c.TLS.Email = "ops@example.com" }},
		{"tls.cert_file", func(c *Config) { c.TLS.CertFile = "/etc/cert.pem" }},
		{"tls.ca_root", func(c *Config) { c.TLS.CARoot = "/etc/root.pem" }},
		{"tls.disable_http_challenge", func(c *Config) { c.TLS.DisableHTTPChallenge = true }},
		{"tls.ca_root", func(c *Config) {
			c.TLS.Mode, c.TLS.Names, c.TLS.Email, c.TLS.CARoot = "acme", []string{"example.com"}, "ops@example.com", "/nonexistent/root.pem"
		}},
		{"admin.listen", func(c *Config) { c.Admin.Listen = "" }},
		{"admin.max_module_bytes", func(c *Config) { c.Admin.MaxModuleBytes = 0 }},
		{"raft.bind", func(c *Config) { c.Raft.Bind = "nowhere" }},
		{"raft.advertise", func(c *Config) { c.Raft.Advertise = "10.0.0.1" }},
		{"runtime.max_concurrent_compiles", func(c *Config) { c.Runtime.MaxConcurrentCompiles = 0 }},
		{"runtime.pool_idle_timeout", func(c *Config) { c.Runtime.PoolIdleTimeout = 0 }},
		{"cluster.bootstrap_expect", func(c *Config) { c.Cluster.BootstrapExpect = -1 }},
		{"tls.on_demand_wildcards", func(c *Config) { c.TLS.OnDemandWildcards = true }},
		{"edge.shutdown_delay", func(c *Config) { c.Edge.ShutdownDelay = duration(2 * time.Minute) }},
		{"edge.shutdown_delay", func(c *Config) { c.Edge.ShutdownDelay = duration(-time.Second) }},
		{"cluster.join_token", func(c *Config) { c.Cluster.JoinToken = "AbC" }},
		{"cluster.join_token_file", func(c *Config) { c.Cluster.JoinTokenFile = "/etc/gojinn/join" }},
		{"edge.http", func(c *Config) { c.Edge.HTTP = "abc:xyz" }},
		{"admin.listen", func(c *Config) { c.Admin.Listen = "127.0.0.1:99999" }},
		{"raft.advertise", func(c *Config) { c.Raft.Bind = "0.0.0.0:7947" }},
		{"raft.advertise", func(c *Config) { c.Raft.Bind = ":7947" }},
		{"cluster.gossip_advertise", func(c *Config) { c.Cluster.Enabled, c.Cluster.GossipAdvertise = true, "host.example:7946" }},
		{"cluster.gossip_advertise", func(c *Config) { c.Cluster.Enabled, c.Cluster.GossipAdvertise = true, "0.0.0.0:7946" }},
		{"cluster.join_token", func(c *Config) { c.Cluster.Enabled, c.Cluster.JoinToken = true, "gjn_AbC" }},
		{"cluster.join_token", func(c *Config) { c.Cluster.Enabled, c.Cluster.JoinToken = true, "abc" }},
		// Cluster keys with defaults are checked without cluster mode too:
		// a staged configuration must not fail the day it is switched on.
		{"cluster.profile", func(c *Config) { c.Cluster.Profile = "fast" }},
		{"cluster.max_voters", func(c *Config) { c.Cluster.MaxVoters = -1 }},
		{"cluster.gossip_key", func(c *Config) { c.Cluster.GossipKey = "notbase64!!" }},
		{"cluster.dead_server_timeout", func(c *Config) { c.Cluster.DeadServerTimeout = 0 }},
		{"tls.names", func(c *Config) {
			c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile, c.TLS.Names = "files", "/etc/cert.pem", "/etc/key.pem", []string{"x.local"}
		}},
		{"tls.key_file", func(c *Config) { c.TLS.KeyFile = "/etc/key.pem" }},
		// Two listeners on one port.
		{"admin.listen", func(c *Config) { c.Edge.HTTPS, c.Admin.Listen = "127.0.0.1:18443", "127.0.0.1:18443" }},
		{"admin.listen", func(c *Config) { c.Edge.HTTPS, c.Admin.Listen = ":18443", "127.0.0.1:18443" }},
		{"edge.http", func(c *Config) { c.Edge.HTTPS, c.Edge.HTTP = ":443", ":443" }},
		{"cluster.gossip_bind", func(c *Config) {
			c.Cluster.Enabled, c.Edge.HTTPS, c.Cluster.GossipBind = true, "10.0.0.1:7946", "0.0.0.0:7946"
		}},
	} {
		cfg := DevConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "config key "+c.key+":") {
			t.Errorf("%s: got %v, want an error naming the key", c.key, err)
		}
	}
}

func TestConfigFileEnvAndErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", `
data_dir = "/srv/gojinn"
log_level = "debug"
[edge]
https = ":8443"
read_timeout = "30s"
max_conns = 500
[tls]
mode = "acme"
names = ["a.example", "b.example"]
email = "ops@a.example"
`)
	cfg, err := loadConfigFile(good, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/gojinn" || cfg.Edge.HTTPS != ":8443" || time.Duration(cfg.Edge.ReadTimeout) != 30*time.Second ||
		cfg.Edge.MaxConns != 500 || len(cfg.TLS.Names) != 2 || cfg.Edge.HTTP != ":80" {
		t.Fatalf("decoded %+v", cfg)
	}
	env := map[string]string{"GOJINN_EDGE_HTTPS": ":9443", "GOJINN_TLS_NAMES": "c.example, d.example", "GOJINN_EDGE_HTTP3": "false", "GOJINN_EDGE_IDLE_TIMEOUT": "5s"}
	if err := applyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.Edge.HTTPS != ":9443" || strings.Join(cfg.TLS.Names, ",") != "c.example,d.example" || cfg.Edge.HTTP3 || time.Duration(cfg.Edge.IdleTimeout) != 5*time.Second {
		t.Fatalf("env overrides: %+v", cfg)
	}
	for _, c := range []struct{ body, msg string }{
		{"data_dir = \"x\"\n[edge]\nhtps = \":1\"\n", "unknown key edge.htps"},
		{"[edge]\nread_timeout = \"soon\"\n", "not a duration"},
		{"[edge\n", "bad.toml:2:"},
		{"[edge]\nmax_conns = \"many\"\n", "max_conns"},
	} {
		_, err := loadConfigFile(write("bad.toml", c.body), DefaultConfig())
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.msg)
		}
	}
	bad := map[string]string{"GOJINN_EDGE_MAX_CONNS": "lots"}
	if err := applyEnv(&cfg, func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "GOJINN_EDGE_MAX_CONNS") {
		t.Fatalf("bad env: %v", err)
	}
}

// The agent refuses a bad config before starting anything, naming the
// problem, with exit code 2.
func TestAgentConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(p, []byte("[tls]\nmode = \"files\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runEnv(context.Background(), []string{"agent", "--config", p, "--data", dir}, &out, &errb, func(string) string { return "" })
	if code != 2 || !strings.Contains(errb.String(), "tls.cert_file") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// Files that are not there stop the agent before it writes anything.
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(p, []byte("[tls]\nmode = \"files\"\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	code = runEnv(context.Background(), []string{"agent", "--config", p, "--data", data}, &out, &errb, func(string) string { return "" })
	if code != 2 || !strings.Contains(errb.String(), "tls.cert_file") || !strings.Contains(errb.String(), "/nonexistent/cert.pem") {
		t.Fatalf("missing certificate file: exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused start created its data directory: %v", err)
	}
	errb.Reset()
	code = runEnv(context.Background(), []string{"agent", "--config", filepath.Join(dir, "missing.toml")}, &out, &errb, func(string) string { return "" })
	if code != 2 || !strings.Contains(errb.String(), "missing.toml") {
		t.Fatalf("missing file: exit %d: %s", code, errb.String())
	}
}

// The agent runs from a config file; its admin token is printed at the
// first start only and stored hashed, never in clear.
func TestAgentTokenPrintedOnce(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := filepath.Join(dir, "node.toml")
	conf := `data_dir = "` + data + `"
[edge]
https = "127.0.0.1:0"
http = "127.0.0.1:0"
[tls]
mode = "internal"
[admin]
listen = "127.0.0.1:0"
[raft]
bind = "127.0.0.1:0"
`
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() string {
		ctx, cancel := context.WithCancel(context.Background())
		out := &lockedBuffer{}
		errb := &lockedBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- runEnv(ctx, []string{"agent", "--config", p}, out, errb, func(string) string { return "" })
		}()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "trust the internal CA") {
			select {
			case code := <-done:
				cancel()
				t.Fatalf("agent exited with %d before it was ready\nstderr: %s", code, errb.String())
			default:
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("agent did not start\nstdout: %s\nstderr: %s", out.String(), errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("agent exit %d: %s", code, errb.String())
		}
		if strings.Contains(errb.String(), "gjn_") {
			t.Fatalf("the token reached the log: %s", errb.String())
		}
		return out.String()
	}
	first := start()
	i := strings.Index(first, "gjn_")
	if i < 0 {
		t.Fatalf("first start printed no token:\n%s", first)
	}
	token := strings.Fields(first[i:])[0]
	if second := start(); strings.Contains(second, "gjn_") {
		t.Fatalf("second start printed the token again:\n%s", second)
	}
	err := filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(token)) {
			t.Errorf("%s holds the token in clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every config key appears in the reference in docs/operations.md, so the
// documentation cannot fall behind the code.
func TestConfigKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	err = walkConfig(reflect.ValueOf(&cfg).Elem(), "", func(key string, _ reflect.Value) error {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(leaf) + `\s+=`).Match(doc) {
			t.Errorf("config key %s is not in the reference in docs/operations.md", key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The gossip keyring: cluster.gossip_keys from the file or, comma-
// separated, from GOJINN_CLUSTER_GOSSIP_KEYS, beside cluster.gossip_key.
// A bad or repeated key is refused naming the key by its index, and the
// error never holds key material.
func TestConfigGossipKeys(t *testing.T) {
	keys := make([]string, 3)
	for i := range keys {
		k, err := cluster.GenerateGossipKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	p := filepath.Join(t.TempDir(), "node.toml")
	body := "[tls]\nmode = \"internal\"\n[cluster]\nenabled = true\ngossip_key = \"" + keys[0] + "\"\ngossip_keys = [\"" + keys[1] + "\"]\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfigFile(p, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.GossipKey != keys[0] || len(cfg.Cluster.GossipKeys) != 1 || cfg.Cluster.GossipKeys[0] != keys[1] {
		t.Fatalf("decoded gossip_key %q gossip_keys %q", cfg.Cluster.GossipKey, cfg.Cluster.GossipKeys)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a primary and a secondary: %v", err)
	}
	env := map[string]string{"GOJINN_CLUSTER_GOSSIP_KEYS": keys[2] + ", " + keys[1]}
	if err := applyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Cluster.GossipKeys, ",") != keys[2]+","+keys[1] {
		t.Fatalf("env GOJINN_CLUSTER_GOSSIP_KEYS: %q", cfg.Cluster.GossipKeys)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("keys from the environment: %v", err)
	}

	short := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // 30 bytes: base64 but no AES key size
	for _, c := range []struct {
		name      string
		primary   string
		more      []string
		key, want string
	}{
		{"not base64", "", []string{keys[0], "not-a-key!"}, "cluster.gossip_keys[1]", "not valid base64"},
		{"wrong size", keys[0], []string{short}, "cluster.gossip_keys[0]", "30 bytes"},
		{"empty entry", "", []string{""}, "cluster.gossip_keys[0]", "empty"},
		{"repeats gossip_key", keys[0], []string{keys[1], keys[0]}, "cluster.gossip_keys[1]", "same key as cluster.gossip_key"},
		{"repeats itself", "", []string{keys[0], keys[1], keys[1]}, "cluster.gossip_keys[2]", "same key as cluster.gossip_keys[1]"},
		{"bad primary", "c2hvcnQ=", []string{keys[0]}, "cluster.gossip_key", "5 bytes"},
	} {
		cfg := DevConfig()
		cfg.Cluster.Enabled = true
		cfg.Cluster.GossipKey, cfg.Cluster.GossipKeys = c.primary, c.more
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "config key "+c.key+":") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s and saying %q", c.name, err, c.key, c.want)
			continue
		}
		for _, k := range append([]string{c.primary, short}, c.more...) {
			if len(k) > 8 && strings.Contains(err.Error(), k) {
				t.Errorf("%s: the error echoes a key: %v", c.name, err)
			}
		}
	}
}

// --advertise HOST sets the three advertised addresses that are not set
// to HOST with the port of their listener; keys set in the file or the
// environment win; anything but one IP, or a listener on port 0, is
// refused naming the problem.
func TestAgentAdvertiseFlag(t *testing.T) {
	noEnv := envLookup(func(string) string { return "" })
	base := []string{"--tls-mode", "internal", "--cluster"}
	cfg, err := agentConfig(append(base, "--advertise", "203.0.113.7", "--raft-bind", "0.0.0.0:7000"), io.Discard, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raft.Advertise != "203.0.113.7:7000" || cfg.Cluster.PeerAdvertise != "203.0.113.7:7948" || cfg.Cluster.GossipAdvertise != "203.0.113.7:7946" {
		t.Fatalf("raft %q peer %q gossip %q", cfg.Raft.Advertise, cfg.Cluster.PeerAdvertise, cfg.Cluster.GossipAdvertise)
	}

	// IPv6, and an explicit key from the environment wins.
	env := func(k string) string {
		if k == "GOJINN_CLUSTER_PEER_ADVERTISE" {
			return "peer.example:443"
		}
		return ""
	}
	cfg, err = agentConfig(append(base, "--advertise", "2001:db8::5"), io.Discard, envLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raft.Advertise != "[2001:db8::5]:7947" || cfg.Cluster.PeerAdvertise != "peer.example:443" || cfg.Cluster.GossipAdvertise != "[2001:db8::5]:7946" {
		t.Fatalf("raft %q peer %q gossip %q", cfg.Raft.Advertise, cfg.Cluster.PeerAdvertise, cfg.Cluster.GossipAdvertise)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--advertise", "node1.example"}, "flag --advertise"},
		{[]string{"--advertise", "10.0.0.1:7000"}, "flag --advertise"},
		{[]string{"--advertise", "0.0.0.0"}, "flag --advertise"},
		{[]string{"--advertise", "10.0.0.1", "--raft-bind", "127.0.0.1:0"}, "config key raft.bind: port 0"},
	} {
		var errb bytes.Buffer
		if _, err := agentConfig(append(base, c.args...), &errb, noEnv); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := runEnv(context.Background(), append([]string{"agent"}, append(base, "--advertise", "node1.example")...), &out, &errb, func(string) string { return "" }); code != 2 || !strings.Contains(errb.String(), "--advertise") {
		t.Errorf("agent with a bad --advertise: exit %d: %s", code, errb.String())
	}
}

// A GOJINN_* variable set to "" sets its key to "", as docs/operations.md
// says ("" turns a listener off), and is not taken for an unset one; an
// empty value where "" is not valid is an error naming the variable.
func TestEnvSetToEmpty(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(p, []byte("data_dir = \""+dir+"\"\n[tls]\nmode = \"internal\"\nnames = [\"a.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GOJINN_EDGE_HTTP": "", "GOJINN_TLS_NAMES": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := agentConfig([]string{"--config", p}, io.Discard, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Edge.HTTP != "" || len(cfg.TLS.Names) != 0 {
		t.Fatalf("edge.http %q, tls.names %q: want both emptied by their empty variables", cfg.Edge.HTTP, cfg.TLS.Names)
	}
	if cfg.Edge.HTTPS != DefaultConfig().Edge.HTTPS {
		t.Fatalf("edge.https %q: an unset variable changed it", cfg.Edge.HTTPS)
	}
	env["GOJINN_EDGE_HTTP3"] = ""
	if _, err := agentConfig([]string{"--config", p}, io.Discard, lookup); err == nil || !strings.Contains(err.Error(), "GOJINN_EDGE_HTTP3") {
		t.Fatalf("GOJINN_EDGE_HTTP3 set to \"\": %v, want an error naming it", err)
	}
}

// A config problem names where it came from: the key of a badly typed
// file value, the variable that set a key the environment got wrong, and
// a GOJINN_* variable that sets nothing is reported, not ignored.
func TestConfigErrorsNameTheirSource(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(p, []byte("[edge]\nread_timeout = \"30x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfigFile(p, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "key edge.read_timeout: ") {
		t.Errorf("badly typed duration: %v, want the key named", err)
	}

	if err := os.WriteFile(p, []byte("data_dir = \""+filepath.Join(dir, "data")+"\"\n[edge]\nhttps = \"127.0.0.1:28443\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := environ
	t.Cleanup(func() { environ = old })
	environ = func() []string {
		return []string{"PATH=/bin", "GOJINN_EDGE_HTTPS=443", "GOJINN_EDGE_HTPS=:1", "GOJINN_TOKEN=gjn_x", "GOJINN_ADDR=x", "GOJINN_CONFIG=" + p}
	}
	lookup := func(k string) (string, bool) {
		if k == "GOJINN_EDGE_HTTPS" {
			return "443", true
		}
		return "", false
	}
	var errb bytes.Buffer
	_, err := agentConfig([]string{"--config", p}, &errb, lookup)
	if err == nil || !strings.Contains(err.Error(), "config key edge.https:") || !strings.Contains(err.Error(), "GOJINN_EDGE_HTTPS is set in the environment") {
		t.Errorf("bad value from the environment: %v, want the key and the variable named", err)
	}
	warn := errb.String()
	if !strings.Contains(warn, "GOJINN_EDGE_HTPS is not a config variable") {
		t.Errorf("no warning for the mistyped variable: %q", warn)
	}
	for _, fine := range []string{"GOJINN_TOKEN", "GOJINN_ADDR", "GOJINN_CONFIG", "GOJINN_EDGE_HTTPS is not"} {
		if strings.Contains(warn, fine) {
			t.Errorf("warned about %s: %q", fine, warn)
		}
	}
	// A key the environment did not set is not blamed on it.
	_, err = agentConfig([]string{"--config", p, "--https", "443"}, io.Discard, func(string) (string, bool) { return "", false })
	if err == nil || strings.Contains(err.Error(), "environment") {
		t.Errorf("bad flag value: %v, want no mention of the environment", err)
	}
}

// node_name = "" (as the reference file in docs/operations.md writes it)
// means the default, the host name: every log line still names the node.
func TestEmptyNodeNameIsTheHostName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("this test needs a host name: %q %v", host, err)
	}
	p := writeNodeConfig(t, t.TempDir(), "", "")
	body, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`(?m)^node_name = .*$`).ReplaceAll(body, []byte(`node_name = ""`))
	if bytes.Equal(named, body) {
		t.Fatalf("no node_name line to empty in %s", body)
	}
	if err := os.WriteFile(p, named, 0o600); err != nil {
		t.Fatal(err)
	}
	n := &devNode{t: t}
	n.launch([]string{"agent", "--config", p}, func(string) string { return "" })
	if n.admin == "" {
		n.cancel()
		t.Fatalf("incomplete banner\nstderr: %s", n.stderr.String())
	}
	n.cancel()
	if code := <-n.done; code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, n.stderr.String())
	}
	want, _ := json.Marshal(host)
	lines := strings.Split(strings.TrimSpace(n.stderr.String()), "\n")
	for _, line := range lines {
		if strings.HasPrefix(line, "{") && !strings.Contains(line, `"node":`+string(want)) {
			t.Fatalf("a log line without \"node\":%s: %s", want, line)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("only %d log lines: %q", len(lines), lines)
	}
}

// dev reads no GOJINN_* configuration variable, and says so when one is
// set, rather than ignoring it silently; client variables are not config.
func TestDevWarnsAboutConfigEnv(t *testing.T) {
	old := environ
	t.Cleanup(func() { environ = old })
	environ = func() []string {
		return []string{"PATH=/bin", "GOJINN_EDGE_HTTP=127.0.0.1:9999", "GOJINN_DATA_DIR=/srv", "GOJINN_TOKEN=gjn_x", "GOJINN_ADDR=x"}
	}
	var out, errb bytes.Buffer
	// An invalid flag ends dev right after the warning, before it starts.
	if code := run(context.Background(), []string{"dev", "--data", t.TempDir(), "--https", "443"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, errb.String())
	}
	warn := errb.String()
	if !strings.Contains(warn, "GOJINN_DATA_DIR, GOJINN_EDGE_HTTP are ignored: dev reads no configuration but its flags") {
		t.Errorf("no warning naming the ignored variables: %q", warn)
	}
	if strings.Contains(warn, "GOJINN_TOKEN") || strings.Contains(warn, "GOJINN_ADDR") {
		t.Errorf("warned about client variables: %q", warn)
	}
}

// In mode acme the challenge ports are the edge's own: a node on 8080 and
// 8443 (not root, behind a port forward) answers HTTP-01 and TLS-ALPN-01
// on its listeners, and CertMagic never tries to bind :80 or :443.
func TestACMEChallengePortsFollowTheEdge(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Edge.HTTP, cfg.Edge.HTTPS = "127.0.0.1:8080", ":8443"
	cfg.TLS.Names, cfg.TLS.Email = []string{"example.com"}, "ops@example.com"
	tc, err := tlsConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.ACMEHTTPPort != 8080 || tc.ACMETLSPort != 8443 || tc.Names != nil {
		t.Fatalf("ACME ports %d and %d, names %v; want 8080, 8443 and names left to ManageAsync", tc.ACMEHTTPPort, tc.ACMETLSPort, tc.Names)
	}
	if p := listenPort(":http"); p != 0 {
		t.Errorf("listenPort(:http) = %d, want 0 (CertMagic's default)", p)
	}
}

// A damaged internal CA is a config error, before the node starts Raft
// or any function (it was found only after both were up).
func TestConfigRefusesDamagedInternalCA(t *testing.T) {
	cfg := DevConfig()
	cfg.DataDir = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("no CA yet: %v", err)
	}
	ca := filepath.Join(cfg.DataDir, "tls", "ca")
	if err := os.MkdirAll(ca, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ca, "root.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "tls.mode (internal)") || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("a CA without its key: %v, want an incomplete-CA error naming tls.mode", err)
	}
	if err := os.WriteFile(filepath.Join(ca, "root.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "root certificate") {
		t.Fatalf("a garbage CA: %v, want the root certificate's problem", err)
	}
}
