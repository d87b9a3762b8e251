// Command gojinn-node is the Gojinn node and its command-line client: `dev`
// and `agent` run a node; `deploy`, `functions`, `status` and `kv` talk to
// a node's admin API; `ca export` prints the internal CA's root.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/storage"
)

func main() {
	// Libraries that log through slog's default logger (quic-go's rare
	// errors, see edge.Server) write JSON lines to stderr like the node.
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: gojinn-node <command> [flags]

node:
  dev        a single node on localhost with the hello example (make run)
  agent      a production node configured by a file, env and flags

client (talks to a node's admin API; --addr/GOJINN_ADDR, --token/GOJINN_TOKEN):
  deploy     deploy NAME FILE.wasm [--route R]... [--env K=V]... [flags]
  functions  list | show NAME | versions NAME | rm NAME | rollback NAME [--to N]
  status     the node's state
  members    the cluster's nodes: status, Raft role, region, version
             members rm NAME: remove a node that is gone for good (dead) from Raft and the list
  kv         get|put|rm|ls NAMESPACE [KEY] [VALUE|-]: the replicated KV
  logs       logs FUNCTION [--follow] [-n N] [--trace-id ID] [--json]: a function's log lines on this node
  backup     backup FILE [--local]: registry, KV and modules in one tar ("-": stdout)
  restore    restore FILE: replace the cluster's state with a backup (disaster recovery)

other:
  ca export  print the internal CA's root certificate (PEM)
  keygen     print a new gossip encryption key (cluster.gossip_key, cluster.gossip_keys)
  version    print the version

Run 'gojinn-node <command> -h' for a command's flags.
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runLookup(ctx, args, stdout, stderr, os.LookupEnv)
}

// runLookup is run with lookup as the environment. It tells a variable set
// to "" from an unset one, which the agent's GOJINN_* settings need: an
// empty GOJINN_EDGE_HTTP turns the plain-HTTP listener off.
func runLookup(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	env := func(k string) string {
		v, _ := lookup(k)
		return v
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	code := dispatch(ctx, args, stdout, stderr, env, lookup)
	if code == 2 && helpAsked(args[1:]) {
		// The flag package printed the command's usage for -h: asking
		// for help is not a usage error.
		return 0
	}
	return code
}

// helpAsked reports a -h, -help or --help among a command's arguments
// (before a "--").
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// dispatch runs the command args[0].
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string, lookup func(string) (string, bool)) int {
	c := cli{stdout: stdout, stderr: stderr, env: env}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "agent":
		return runAgent(ctx, args[1:], stdout, stderr, lookup)
	case "deploy":
		return c.deploy(ctx, args[1:])
	case "functions", "fn":
		return c.functions(ctx, args[1:])
	case "status":
		return c.status(ctx, args[1:])
	case "members":
		return c.members(ctx, args[1:])
	case "kv":
		return c.kv(ctx, args[1:])
	case "logs":
		return c.logs(ctx, args[1:])
	case "backup", "restore":
		return c.backupRestore(ctx, args[0], args[1:])
	case "keygen":
		if len(args) > 1 {
			fmt.Fprintln(stderr, "usage: gojinn-node keygen: prints a new gossip encryption key for cluster.gossip_key (it takes no arguments)")
			return 2
		}
		key, err := cluster.GenerateGossipKey()
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintln(stdout, key)
		return 0
	case "ca":
		return runCA(args[1:], stdout, stderr)
	case "version":
		switch {
		case len(args) == 2 && args[1] == "--json":
			return c.printJSON(map[string]string{"version": version})
		case len(args) > 1:
			fmt.Fprintln(stderr, "usage: gojinn-node version [--json]: prints this build's version")
			return 2
		}
		fmt.Fprintln(stdout, "gojinn-node", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gojinn-node: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// nodeFlags are the flags `dev` and `agent` share; set ones override the
// config file and the environment.
func nodeFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (config key data_dir)")
	fs.StringVar(&cfg.Edge.HTTP, "http", cfg.Edge.HTTP, "plain-HTTP listen address, empty to disable (edge.http)")
	fs.StringVar(&cfg.Edge.HTTPS, "https", cfg.Edge.HTTPS, "HTTPS and HTTP/3 listen address, empty to disable (edge.https)")
	fs.StringVar(&cfg.Admin.Listen, "admin", cfg.Admin.Listen, "admin API listen address (admin.listen)")
	fs.StringVar(&cfg.Raft.Bind, "raft-bind", cfg.Raft.Bind, "Raft listen address (raft.bind)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (log_level)")
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	cfg, err := agentConfig(args, stderr, lookup)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errFlagParse) {
			fmt.Fprintln(stderr, "gojinn-node agent:", err)
		}
		return 2
	}
	log := newLogger(stderr, cfg)
	return serve(ctx, cfg, log, stdout, false, nil)
}

// errFlagParse: the flag package has already reported the problem.
var errFlagParse = errors.New("bad flags")

// agentConfig is the agent's validated configuration from the config
// file, then the environment, then flags, each overriding the earlier. A
// GOJINN_* variable set to "" sets its key to "" (lookup tells it from an
// unset one).
func agentConfig(args []string, stderr io.Writer, lookup func(string) (string, bool)) (Config, error) {
	// Parse once to find --config, then again over the loaded config.
	var path string
	pre := flag.NewFlagSet("agent", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	configEnv, _ := lookup("GOJINN_CONFIG")
	pre.StringVar(&path, "config", configEnv, "")
	cfgProbe := DefaultConfig()
	nodeFlags(pre, &cfgProbe)
	pre.String("tls-mode", "", "")
	pre.Bool("cluster", false, "")
	pre.String("join", "", "")
	pre.String("join-token", "", "")
	pre.Int("bootstrap-expect", 0, "")
	pre.String("advertise", "", "")
	_ = pre.Parse(args)

	cfg := DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = loadConfigFile(path, cfg); err != nil {
			return cfg, err
		}
	}
	if err := applyEnv(&cfg, lookup); err != nil {
		return cfg, err
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "config", path, "TOML config file (env GOJINN_CONFIG); docs/operations.md lists every key")
	nodeFlags(fs, &cfg)
	fs.StringVar(&cfg.TLS.Mode, "tls-mode", cfg.TLS.Mode, "acme, internal or files (tls.mode)")
	fs.BoolVar(&cfg.Cluster.Enabled, "cluster", cfg.Cluster.Enabled, "run as a cluster member (cluster.enabled)")
	fs.Func("join", "seed peer API address host:port, repeatable or comma-separated; implies --cluster (cluster.join)", func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.Cluster.Join = append(cfg.Cluster.Join, p)
			}
		}
		cfg.Cluster.Enabled = true
		return nil
	})
	fs.IntVar(&cfg.Cluster.BootstrapExpect, "bootstrap-expect", cfg.Cluster.BootstrapExpect, "on the bootstrapping node: hold the first election until this many servers joined (cluster.bootstrap_expect)")
	fs.Var((*secretFlag)(&cfg.Cluster.JoinToken), "join-token", "join token from the bootstrap node (cluster.join_token; env GOJINN_CLUSTER_JOIN_TOKEN)")
	advertise := fs.String("advertise", "", "IP other nodes reach this one at: sets raft.advertise, cluster.peer_advertise and cluster.gossip_advertise that are not set to IP:port of raft.bind, cluster.peer_listen and cluster.gossip_bind")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errFlagParse
	}
	if *advertise != "" {
		// After every flag, so --raft-bind given after --advertise counts.
		if err := cfg.applyAdvertise(*advertise); err != nil {
			return cfg, err
		}
	}
	for _, name := range unknownEnv(environ()) {
		fmt.Fprintf(stderr, "gojinn-node agent: warning: %s is not a config variable and is ignored (a typo? docs/operations.md lists the keys; the variable of key edge.https is GOJINN_EDGE_HTTPS)\n", name)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, envSource(err, lookup)
	}
	return cfg, nil
}

// environ lists the environment for the unknown-variable warning; tests
// replace it.
var environ = os.Environ

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DevConfig()
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodeFlags(fs, &cfg)
	module := fs.String("module", "bin/examples/hello.pooled.wasm", "module deployed as the hello function at / (make examples builds it); empty to deploy nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if set := configEnvSet(environ()); len(set) > 0 {
		fmt.Fprintf(stderr, "gojinn-node dev: warning: %s ignored: dev reads no configuration but its flags (gojinn-node dev -h); `gojinn-node agent` reads the GOJINN_* variables\n",
			strings.Join(set, ", ")+map[bool]string{true: " is", false: " are"}[len(set) == 1])
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "gojinn-node dev:", err)
		return 2
	}
	log := newLogger(stderr, cfg)
	var seed func(context.Context, *node) error
	if *module != "" {
		seed = func(ctx context.Context, n *node) error {
			err := deployHello(ctx, n, *module)
			if errors.Is(err, storage.ErrRouteConflict) {
				// The user deployed their own function at / in this
				// data directory: it serves, the example stays out.
				log.Warn("the example hello function was not deployed: another function serves its route /*; remove that function to get the example back, or start with --module '' to skip the example", "err", err)
				return nil
			}
			if err != nil {
				return fmt.Errorf("deploying the example %s (start with --module '' to deploy nothing): %w", *module, err)
			}
			return nil
		}
	}
	return serve(ctx, cfg, log, stdout, true, seed)
}

// serve runs a node until ctx ends or a listener fails.
func serve(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer, dev bool, seed func(context.Context, *node) error) int {
	n, err := startNodeSeeded(ctx, cfg, log, dev, seed)
	if err != nil {
		if hint := startHint(err); hint != "" {
			log.Error("node failed to start", "err", err, "hint", hint)
		} else {
			log.Error("node failed to start", "err", err)
		}
		return 1
	}
	printBanner(stdout, n, dev)
	// The banner showed the secrets this data directory was waiting to
	// show (a new admin token, a bootstrap's join token): from now on only
	// their hashes remain.
	if err := cluster.MarkSecretsShown(cfg.DataDir); err != nil {
		log.Warn("could not remove a shown secret's copy from the data directory; delete it by hand", "err", err)
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
		if d := time.Duration(cfg.Edge.ShutdownDelay); d > 0 {
			// Load balancers see /readyz fail and stop sending new
			// requests before the listeners close.
			n.stopping.Store(true)
			log.Info("not ready; the edge keeps serving until edge.shutdown_delay has passed", "delay", d)
			time.Sleep(d)
		}
	case err := <-n.edge.Err():
		log.Error("edge failed", "err", err)
		code = 1
	case err := <-n.adminCh:
		log.Error("admin api failed", "err", err)
		code = 1
	case err := <-agentFailed(n):
		// Another live node has this node's identity (a copied data
		// directory, a node_name in use): serving on would split it.
		log.Error("cluster: this node cannot stay in the cluster", "err", err)
		code = 1
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Edge.ShutdownGrace)+10*time.Second)
	defer cancel()
	n.stop(stopCtx)
	return code
}

// agentFailed is the cluster agent's Failed channel; nil (never ready)
// on a node without a cluster.
func agentFailed(n *node) <-chan error {
	if n.agent == nil {
		return nil
	}
	return n.agent.Failed()
}

func printBanner(w io.Writer, n *node, dev bool) {
	https, h3, plain := n.edge.Addrs()
	mode := "agent"
	if dev {
		mode = "dev"
	}
	fmt.Fprintf(w, "gojinn-node %s ready (version %s)\n", mode, version)
	if plain != "" {
		fmt.Fprintf(w, "  http:   http://%s/\n", plain)
	}
	if https != "" {
		fmt.Fprintf(w, "  https:  https://%s/ (HTTP/1.1, HTTP/2)\n", https)
	}
	if h3 != "" {
		fmt.Fprintf(w, "  http3:  https://%s/ (QUIC)\n", h3)
	}
	fmt.Fprintf(w, "  admin:  http://%s/\n", n.adminL.Addr())
	if n.agent != nil {
		if n.agent.Enrolls() {
			fmt.Fprintf(w, "  peer:   %s (node %s; other nodes join with cluster.join = [\"%s\"])\n", n.agent.PeerAddr(), n.store.Node().ID(), n.agent.PeerAddr())
		} else {
			// Only a node holding the cluster CA enrolls new nodes.
			fmt.Fprintf(w, "  peer:   %s (node %s; new nodes join through the node that bootstrapped, or a voter holding DATA/cluster/ca)\n", n.agent.PeerAddr(), n.store.Node().ID())
		}
		if n.agent.JoinTokenCreated != "" {
			fmt.Fprintf(w, "  cluster join token (printed once; give it to joining nodes as cluster.join_token): %s\n", n.agent.JoinTokenCreated)
		}
	}
	if n.token != "" {
		if dev {
			fmt.Fprintf(w, "  admin token (dev; also in %s/%s): %s\n", n.cfg.DataDir, cluster.TokenFile, n.token)
		} else {
			fmt.Fprintf(w, "  admin token (printed once, stored hashed; keep it safe): %s\n", n.token)
		}
	}
	if n.tls != nil && n.cfg.TLS.Mode == string(edge.TLSModeInternal) {
		fmt.Fprintf(w, "  trust the internal CA: gojinn-node ca export --data %s > gojinn-ca.pem\n", n.cfg.DataDir)
	}
}

// deployHello deploys the example at / unless that exact module already
// serves there, so restarting `make run` adds no versions.
func deployHello(ctx context.Context, n *node, path string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w (run `make examples` to build the examples)", path, err)
	}
	sum := sha256.Sum256(wasm)
	sha := hex.EncodeToString(sum[:])
	if f, ok := n.store.Function("hello"); ok {
		if v, ok := f.ActiveVersion(); ok && v.SHA256 == sha {
			return n.rec.WaitReady(ctx, "hello", v.Version)
		}
	}
	if _, err := n.store.Blobs().Put(sha, bytes.NewReader(wasm), int64(len(wasm))); err != nil {
		return err
	}
	spec := storage.Spec{SHA256: sha, Size: int64(len(wasm)), Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/*"}}}
	if err := n.rec.CheckDeploy(ctx, "hello", spec); err != nil {
		return err
	}
	v, err := n.store.Deploy(ctx, "hello", spec)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return n.rec.WaitReady(wctx, "hello", v.Version)
}

func runCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprintln(stderr, "usage: gojinn-node ca export [--data DIR]")
		return 2
	}
	fs := flag.NewFlagSet("ca export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", ".gojinn", "the node's data directory")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	pem, err := edge.ExportCARoot(*data)
	if err != nil {
		if errors.Is(err, edge.ErrNoCARoot) {
			fmt.Fprintf(stderr, "gojinn-node: no internal CA in %s: start the node once with tls mode internal\n", *data)
			return 1
		}
		fmt.Fprintln(stderr, "gojinn-node:", err)
		return 1
	}
	_, _ = stdout.Write(pem)
	return 0
}
