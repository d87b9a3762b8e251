package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/storage"
)

// DefaultAdminAddr is where the CLI finds a node's admin API when neither
// --addr nor GOJINN_ADDR says otherwise; `dev` and `agent` listen there by
// default.
const DefaultAdminAddr = "http://127.0.0.1:9090"

// clientFlags are the flags every client subcommand shares.
type clientFlags struct {
	addr, token, data string
	json              bool
	// answer bounds the wait for a response's headers once the request
	// is sent; zero is answerWithin.
	answer time.Duration
}

// How long the CLI waits for a node to start answering a request it sent
// (net/http's ResponseHeaderTimeout): a node that accepts a connection but
// never answers (hung, or not a Gojinn node) fails the command instead of
// hanging it. Connecting and the TLS handshake are bounded by net/http's
// default transport (30 s and 10 s); uploads, downloads and `logs
// --follow` are not bounded once the answer started.
var (
	answerWithin = 30 * time.Second // a variable for tests
	// answerAfterWait is for requests the node answers only after
	// waiting: a deploy or rollback waits for every node to serve the
	// version (the node's default bound is 60 s) after compiling the
	// module, a restore stores the modules and replaces the state
	// through Raft, a backup first catches up with the leader.
	answerAfterWait = 5 * time.Minute
)

// cliHTTPClient is net/http's default transport with answer as its
// response header timeout.
func cliHTTPClient(answer time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = answer
	return &http.Client{Transport: t}
}

func (c *clientFlags) register(fs *flag.FlagSet, env func(string) string) {
	addr := env("GOJINN_ADDR")
	if addr == "" {
		addr = DefaultAdminAddr
	}
	fs.StringVar(&c.addr, "addr", addr, "admin API URL (env GOJINN_ADDR)")
	c.token = env("GOJINN_TOKEN")
	fs.Var((*secretFlag)(&c.token), "token", "admin token (env GOJINN_TOKEN; default: DATA/admin-token of a dev node on this machine)")
	fs.StringVar(&c.data, "data", ".gojinn", "data directory of a local dev node, read for its token when --token is unset")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of tables")
}

func (c *clientFlags) client() (*cluster.Client, error) {
	addr := c.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	tok := c.token
	if tok == "" {
		// A local dev node's token file, sent only to a node on this
		// machine: a token found on disk must not go to whatever --addr
		// names.
		if !loopbackURL(addr) {
			return nil, fmt.Errorf("no admin token for %s: pass --token or set GOJINN_TOKEN (the token file of a local dev node, %s, is only sent to a node on this machine)", addr, filepath.Join(c.data, cluster.TokenFile))
		}
		b, err := os.ReadFile(filepath.Join(c.data, cluster.TokenFile))
		if err != nil {
			return nil, errors.New("no admin token: pass --token or set GOJINN_TOKEN (a node prints its token at first start; `gojinn-node dev` prints it every start)")
		}
		tok = strings.TrimSpace(string(b))
	}
	answer := c.answer
	if answer == 0 {
		answer = answerWithin
	}
	return cluster.NewClient(strings.TrimSuffix(addr, "/"), tok, cliHTTPClient(answer)), nil
}

// loopbackURL reports whether rawURL names a host on this machine:
// localhost or a loopback IP literal.
func loopbackURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// secretFlag is a string flag whose value is never printed: the flag
// package shows a flag's initial value as its default in usage output,
// and a secret taken from the environment or a config file would end up
// on the terminal or in a CI log after any mistyped flag.
type secretFlag string

// String hides the value (it is what usage output prints as the default).
func (s *secretFlag) String() string { return "" }

// Set stores v.
func (s *secretFlag) Set(v string) error { *s = secretFlag(v); return nil }

// cli carries a client subcommand's streams.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
	stdin          io.Reader // `kv put NS KEY -` reads it; nil means os.Stdin
}

func (c cli) fail(err error) int {
	fmt.Fprintln(c.stderr, "gojinn-node:", err)
	return 1
}

func (c cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return 0
}

// flagSet is a client subcommand's flag set, reporting to stderr.
func (c cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	return fs
}

// connect adds the client flags to fs, parses args and returns a client
// for the node, the flags and the positional arguments. A non-zero code
// means the command ends with it (the problem is already printed).
func (c cli) connect(fs *flag.FlagSet, args []string) (*cluster.Client, clientFlags, []string, int) {
	return c.connectWithin(fs, args, 0)
}

// connectWithin is connect with answer as the client's bound on the wait
// for an answer (clientFlags.answer).
func (c cli) connectWithin(fs *flag.FlagSet, args []string, answer time.Duration) (*cluster.Client, clientFlags, []string, int) {
	cf := clientFlags{answer: answer}
	cf.register(fs, c.env)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, cf, nil, 2
	}
	cl, err := cf.client()
	if err != nil {
		return nil, cf, nil, c.fail(err)
	}
	return cl, cf, pos, 0
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// byteSize parses "128MiB", "64M", "1GiB", "512k" or a plain byte count.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Set(s string) error {
	v := strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (write e.g. 128MiB, 64M or 1048576)", s)
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("%q is too large a size", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// parseArgs lets flags come after positional arguments too, as users
// type them: `deploy hello hello.wasm --route /`.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c cli) deploy(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var cf clientFlags
	cf.register(fs, c.env)
	var routes, envs multiFlag
	var memory, maxBody byteSize
	fs.Var(&routes, "route", "route `[METHODS ]HOST/PATH`, e.g. /hello, example.com/api/*, \"GET,HEAD */static/*\" (repeatable)")
	fs.Var(&envs, "env", "environment variable `K=V` for the guest (repeatable)")
	mode := fs.String("mode", "isolated", "execution mode: isolated or pooled")
	reset := fs.String("reset", "", "pooled memory reset: none, auto, copy or cow")
	timeout := fs.Duration("timeout", 0, "wall-clock limit per request (default 10s)")
	cpu := fs.Duration("cpu", 0, "CPU-time budget per request (default: the timeout)")
	fs.Var(&memory, "memory", "memory limit per instance, e.g. 128MiB (default 128MiB)")
	fs.Var(&maxBody, "max-body", "request body limit, e.g. 10MiB")
	var maxResp byteSize
	fs.Var(&maxResp, "max-response-body", "response body limit, e.g. 20MiB (default 10MiB)")
	queue := fs.Duration("queue-timeout", 0, "how long a request waits for a free instance before 503 (default 1s)")
	instances := fs.Int("max-instances", 0, "invocations of the function at once, pooled or isolated (default 2 x cores, at least 4)")
	noWait := fs.Bool("no-wait", false, "return once the deploy is committed, before the node serves it")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintln(c.stderr, "usage: gojinn-node deploy NAME FILE.wasm [--route R]... [--env K=V]... [flags]")
		return 2
	}
	name, file := pos[0], pos[1]
	spec := storage.Spec{Mode: *mode, Reset: *reset, Limits: storage.Limits{
		MemoryBytes: uint64(memory), Timeout: storage.Duration(*timeout), CPUTime: storage.Duration(*cpu),
		MaxRequestBody: int64(maxBody), MaxInstances: *instances,
		MaxResponseBody: int64(maxResp), QueueTimeout: storage.Duration(*queue),
	}}
	for _, r := range routes {
		er, err := edge.ParseRoute(r)
		if err != nil {
			return c.fail(fmt.Errorf("--route %q: %w", r, err))
		}
		spec.Routes = append(spec.Routes, storage.Route{Host: er.Host, Path: er.Path, Methods: er.Methods})
	}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c.fail(fmt.Errorf("--env %q: write KEY=VALUE", kv))
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		if _, dup := spec.Env[k]; dup {
			// Last-wins would let a typo overwrite a secret unnoticed.
			return c.fail(fmt.Errorf("--env %s is given twice; give each variable once", k))
		}
		spec.Env[k] = v
	}
	f, err := os.Open(file)
	if err != nil {
		return c.fail(err)
	}
	defer func() { _ = f.Close() }()
	module, err := checkWasmMagic(f)
	if err != nil {
		return c.fail(err)
	}
	// The spec's own rules, checked before a large module is uploaded;
	// the node checks them again, and the module.
	check := spec
	check.SHA256, check.Size = strings.Repeat("0", 64), 1
	if err := cluster.ValidateDeploySpec(name, check); err != nil {
		return c.fail(flagNames(err))
	}
	cf.answer = answerAfterWait // the node compiles, commits, then waits
	cl, err := cf.client()
	if err != nil {
		return c.fail(err)
	}
	bar := newProgress(c.stderr, file)
	v, err := cl.Deploy(ctx, name, module, spec, cluster.DeployOptions{Wait: !*noWait, Progress: bar.update, Stored: bar.stored})
	bar.done()
	if err != nil {
		return c.fail(flagNames(err))
	}
	if cf.json {
		return c.printJSON(v)
	}
	state := "serving"
	switch {
	case *noWait:
		state = "committed"
	case len(v.Routes) == 0:
		// Loaded and ready, but no request reaches it.
		state = "ready, but no route reaches it (deploy again with --route to serve it over HTTP)"
	}
	fmt.Fprintf(c.stdout, "deployed %s version %d (%s, sha256 %s): %s\n", name, v.Version, modeOf(v.Mode), short(v.SHA256), state)
	return 0
}

// checkWasmMagic refuses, before anything is uploaded, a file that is not
// a WebAssembly binary, and returns the module to upload from its start:
// f itself, or, when f cannot seek (a pipe), its first bytes and the rest.
// An empty file passes: the client refuses it with its own message.
func checkWasmMagic(f *os.File) (io.Reader, error) {
	var head [4]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if n > 0 && (n < 4 || string(head[:]) != "\x00asm") {
		return nil, fmt.Errorf("%s is not a WebAssembly module (it does not start with \\0asm): deploy the .wasm file a build made (GOOS=wasip1 GOARCH=wasm for Go, wat2wasm for WAT)", f.Name())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return io.MultiReader(bytes.NewReader(head[:n]), f), nil
	}
	return f, nil
}

// specField matches a deploy spec field as the node's messages name it:
// spec.limits.timeout, spec.routes[2].path.
var specField = regexp.MustCompile(`spec\.(?:limits\.)?[a-z_]+(?:\[(\d+)\])?(?:\.[a-z_]+(?:\[\d+\])?)?`)

// specFlags are the deploy flags that set spec fields.
var specFlags = map[string]string{
	"spec.mode": "--mode", "spec.reset": "--reset", "spec.env": "--env", "spec.routes": "--route",
	"spec.limits.memory_bytes": "--memory", "spec.limits.timeout": "--timeout", "spec.limits.cpu_time": "--cpu",
	"spec.limits.max_request_body": "--max-body", "spec.limits.max_instances": "--max-instances",
	"spec.limits.max_response_body": "--max-response-body", "spec.limits.queue_timeout": "--queue-timeout",
}

// flagNames puts the deploy flag before each spec field an error names,
// "--timeout (spec.limits.timeout)", "--route #2 (spec.routes[1].path)":
// the user of `deploy` typed flags, not the API's JSON.
func flagNames(err error) error {
	msg := err.Error()
	out := specField.ReplaceAllStringFunc(msg, func(m string) string {
		field, _, _ := strings.Cut(m, "[")
		if i := strings.Index(field[len("spec."):], "."); i >= 0 && !strings.HasPrefix(field, "spec.limits.") {
			field = field[:len("spec.")+i]
		}
		flag, ok := specFlags[field]
		if !ok {
			return m
		}
		if sub := specField.FindStringSubmatch(m); sub[1] != "" {
			n, _ := strconv.Atoi(sub[1])
			return fmt.Sprintf("%s #%d (%s)", flag, n+1, m)
		}
		return fmt.Sprintf("%s (%s)", flag, m)
	})
	if out == msg {
		return err
	}
	return errors.New(out)
}

// functionsUsage is the usage of `functions`, printed for -h and after a
// usage error.
const functionsUsage = `usage:
  gojinn-node functions [list] [flags]             list every function and its active version
  gojinn-node functions show NAME [flags]          one function: routes, env keys, limits
  gojinn-node functions versions NAME [flags]      its versions, the active one marked *
  gojinn-node functions rollback NAME [--to N]     make the previous version (or version N) active
  gojinn-node functions rm NAME [flags]            remove the function and all its versions
Flags may come before or after the subcommand and its arguments.
`

func (c cli) functions(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("functions", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprint(c.stderr, functionsUsage, "flags:\n")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs, c.env)
	to := fs.Int64("to", 0, "rollback only: the version to make active (default: the previous one)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	// Usage errors first: they need no node, nor a token.
	sub := "list"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(c.stderr, "gojinn-node functions: "+format+"\n", a...)
		fmt.Fprint(c.stderr, functionsUsage)
		return 2
	}
	var name string
	switch sub {
	case "list", "ls":
		if len(pos) != 0 {
			return usage("list takes no arguments (got %q)", strings.Join(pos, " "))
		}
	case "show", "versions", "rm", "remove", "rollback":
		if len(pos) != 1 {
			return usage("%s takes one function NAME (got %d arguments)", sub, len(pos))
		}
		name = pos[0]
		if err := storage.ValidateName(name); err != nil {
			return usage("%v", err)
		}
	default:
		return usage("unknown subcommand %q (use list, show, versions, rm or rollback)", sub)
	}
	if sub != "rollback" {
		var toSet bool
		fs.Visit(func(f *flag.Flag) { toSet = toSet || f.Name == "to" })
		if toSet {
			return usage("--to is for rollback only, not %s", sub)
		}
	}
	if sub == "rollback" {
		cf.answer = answerAfterWait // the node waits until it serves the version
	}
	cl, err := cf.client()
	if err != nil {
		return c.fail(err)
	}
	switch sub {
	case "list", "ls":
		list, err := cl.Functions(ctx)
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(list)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tMODE\tROUTES\tSHA256\tDEPLOYED")
		for _, f := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", f.Name, f.Active, modeOf(f.Mode), routeList(f.Routes), short(f.SHA256), f.DeployedAt.Local().Format(time.DateTime))
		}
		_ = tw.Flush()
		return 0
	case "show":
		f, err := cl.Function(ctx, name)
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(f)
		}
		v, _ := f.ActiveVersion()
		mode := modeOf(v.Mode)
		if v.Reset != "" {
			mode += ", reset " + v.Reset
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "name\t%s\nactive version\t%d (kept: %s)\nmode\t%s\nroutes\t%s\nsha256\t%s\nsize\t%d bytes\nenv\t%s\nlimits\t%s\ndeployed\t%s\n",
			f.Name, f.Active, versionNumbers(f.Versions), mode, routeList(v.Routes), v.SHA256, v.Size,
			envKeys(v.Env), limitsText(v.Limits), v.DeployedAt.Local().Format(time.DateTime))
		_ = tw.Flush()
		return 0
	case "versions":
		vs, err := cl.Versions(ctx, name)
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(vs)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tACTIVE\tMODE\tROUTES\tSHA256\tDEPLOYED")
		for _, v := range vs {
			active := ""
			if v.Active {
				active = "*"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.Version.Version, active, modeOf(v.Mode), routeList(v.Routes), short(v.SHA256), v.DeployedAt.Local().Format(time.DateTime))
		}
		_ = tw.Flush()
		return 0
	case "rm", "remove":
		if err := cl.Remove(ctx, name); err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(map[string]string{"removed": name})
		}
		fmt.Fprintf(c.stdout, "removed %s\n", name)
		return 0
	case "rollback":
		v, err := cl.Rollback(ctx, name, *to)
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(v)
		}
		fmt.Fprintf(c.stdout, "%s now serves version %d (sha256 %s)\n", name, v.Version, short(v.SHA256))
		return 0
	}
	return 0 // unreachable: the subcommand was checked above
}

func (c cli) status(ctx context.Context, args []string) int {
	cl, cf, _, code := c.connect(c.flagSet("status"), args)
	if code != 0 {
		return code
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return c.fail(err)
	}
	if cf.json {
		return c.printJSON(st)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s\nversion\t%s\nraft\t%s (term %d, commit %d, applied %d, %s)\nleader\t%s\nfunctions\t%d\nup since\t%s\n",
		st.NodeID, st.Version, st.RaftState, st.Term, st.CommitIndex, st.AppliedIndex, plural(st.Voters, "voter"), st.Leader, st.Functions,
		st.StartedAt.Local().Format(time.DateTime))
	_ = tw.Flush()
	return 0
}

// members runs `members` (list the nodes) and `members rm NAME` (force a
// node that is gone for good out of the cluster).
func (c cli) members(ctx context.Context, args []string) int {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list", "ls":
	case "rm", "remove", "force-leave":
		return c.membersRemove(ctx, sub, args)
	default:
		fmt.Fprintf(c.stderr, "gojinn-node members: unknown subcommand %q (use list or rm NAME)\n", sub)
		return 2
	}
	cl, cf, pos, code := c.connect(c.flagSet("members"), args)
	if code != 0 {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintln(c.stderr, "usage: gojinn-node members [list] | rm NAME")
		return 2
	}
	list, err := cl.Members(ctx)
	if err != nil {
		return c.fail(err)
	}
	if cf.json {
		return c.printJSON(list)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tSTATUS\tROLE\tREGION\tVERSION\tGOSSIP\tRAFT")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, dash(m.NodeName), m.Status, m.Role, dash(m.Region), dash(m.Version), dash(m.Addr), dash(m.RaftAddr))
	}
	_ = tw.Flush()
	return 0
}

// membersRemove runs `members rm NAME`: a member that is gone for good
// (dead, or left without leaving Raft) leaves the Raft configuration and
// the members list.
func (c cli) membersRemove(ctx context.Context, sub string, args []string) int {
	cl, cf, pos, code := c.connect(c.flagSet("members "+sub), args)
	if code != 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.stderr, "usage: gojinn-node members %s NAME (NAME is the NODE column of `gojinn-node members`)\n", sub)
		return 2
	}
	res, err := cl.RemoveMember(ctx, pos[0])
	if err != nil {
		return c.fail(err)
	}
	if cf.json {
		return c.printJSON(res)
	}
	raft := "it was not in the Raft configuration"
	if res.RemovedFromRaft {
		raft = "removed from the Raft configuration (it was a " + res.RaftRole + ")"
	}
	fmt.Fprintf(c.stdout, "removed %s (%s): %s; every member stops listing it\n", res.Name, res.Status, raft)
	return 0
}

// backupRestore runs `backup FILE` (write a backup; "-" for stdout) and
// `restore FILE` (replace the cluster's state with one).
func (c cli) backupRestore(ctx context.Context, cmd string, args []string) int {
	fs := c.flagSet(cmd)
	var local *bool
	if cmd == "backup" {
		local = fs.Bool("local", false, "back up this node's state as it is, without catching up with a leader (it may miss the latest writes; for a cluster that lost its quorum)")
	}
	cl, cf, pos, code := c.connectWithin(fs, args, answerAfterWait)
	if code != 0 {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.stderr, "usage: gojinn-node %s FILE\n", cmd)
		return 2
	}
	if cf.json && cmd == "backup" && pos[0] == "-" {
		fmt.Fprintln(c.stderr, "gojinn-node backup: --json and FILE - both write to stdout; give a FILE, or leave out --json")
		return 2
	}
	if cmd == "restore" {
		f, err := os.Open(pos[0])
		if err != nil {
			return c.fail(err)
		}
		defer func() { _ = f.Close() }()
		if err := cl.Restore(ctx, f); err != nil {
			return c.fail(err)
		}
		if cf.json {
			return c.printJSON(map[string]string{"restored": pos[0]})
		}
		fmt.Fprintf(c.stdout, "restored %s\n", pos[0])
		return 0
	}
	out := io.Writer(c.stdout)
	var f *os.File
	if pos[0] != "-" {
		// Written next to the target, then renamed: a failed backup never
		// leaves a truncated file under the name.
		var err error
		if f, err = os.CreateTemp(filepath.Dir(pos[0]), ".gojinn-backup-*"); err != nil {
			var pe *iofs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the temporary file's name means nothing to the user
			}
			return c.fail(fmt.Errorf("cannot write the backup to %s: %w (its directory must exist and be writable: the backup is written beside it, then renamed)", pos[0], err))
		}
		defer func() { _ = os.Remove(f.Name()) }()
		out = f
	}
	written := &countingWriter{w: out}
	out = written
	backup := cl.Backup
	if *local {
		backup = cl.BackupLocal
	}
	if err := backup(ctx, out); err != nil {
		if f != nil {
			_ = f.Close()
		}
		return c.fail(err)
	}
	if f != nil {
		// On disk before it takes the name: a power cut must not leave
		// a short backup where the operator expects a whole one.
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return c.fail(fmt.Errorf("write the backup to %s: %w", pos[0], err))
		}
		if err := f.Close(); err != nil {
			return c.fail(err)
		}
		if err := os.Rename(f.Name(), pos[0]); err != nil {
			return c.fail(err)
		}
		if d, err := os.Open(filepath.Dir(pos[0])); err == nil {
			_ = d.Sync() // the rename itself; best effort, the file is whole either way
			_ = d.Close()
		}
		if cf.json {
			return c.printJSON(struct {
				Wrote string `json:"wrote"`
				Bytes int64  `json:"bytes"`
			}{pos[0], written.n})
		}
		fmt.Fprintf(c.stdout, "wrote %s\n", pos[0])
	}
	return 0
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func modeOf(m string) string {
	if m == "" {
		return "isolated"
	}
	return m
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func routeList(rs []storage.Route) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = edge.Route{Host: r.Host, Path: r.Path, Methods: r.Methods}.String()
	}
	return strings.Join(parts, ", ")
}

// versionNumbers lists the kept versions' numbers, "1, 2, 5": they need
// not run from 1 (a removed function's numbers go on).
func versionNumbers(vs []storage.Version) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatInt(v.Version, 10)
	}
	return strings.Join(parts, ", ")
}

// plural is "1 voter", "3 voters".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func envKeys(env map[string]string) string {
	if len(env) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, " ") + " (values hidden)"
}

func limitsText(l storage.Limits) string {
	var parts []string
	if l.MemoryBytes > 0 {
		parts = append(parts, "memory "+bytesText(int64(min(l.MemoryBytes, math.MaxInt64))))
	}
	if l.Timeout > 0 {
		parts = append(parts, "timeout "+time.Duration(l.Timeout).String())
	}
	if l.CPUTime > 0 {
		parts = append(parts, "cpu "+time.Duration(l.CPUTime).String())
	}
	if l.MaxRequestBody > 0 {
		parts = append(parts, "request body "+bytesText(l.MaxRequestBody))
	}
	if l.MaxResponseBody > 0 {
		parts = append(parts, "response body "+bytesText(l.MaxResponseBody))
	}
	if l.MaxInstances > 0 {
		parts = append(parts, fmt.Sprintf("instances %d", l.MaxInstances))
	}
	if l.QueueTimeout > 0 {
		parts = append(parts, "queue "+time.Duration(l.QueueTimeout).String())
	}
	if len(parts) == 0 {
		return "defaults"
	}
	return strings.Join(parts, ", ")
}

// bytesText is n in the largest binary unit that writes it exactly
// ("8 MiB", "8500 KiB", "1000 B"), the form --memory and --max-body read.
func bytesText(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
