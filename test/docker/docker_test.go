package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
)

// Timeouts of single steps; the whole test has testTimeout.
const (
	testTimeout    = 8 * time.Minute
	dockerTimeout  = 30 * time.Second // one docker command (build has its own)
	buildTimeout   = 3 * time.Minute  // go build, then docker build
	startTimeout   = 60 * time.Second // a container prints its banner
	clusterTimeout = 60 * time.Second // three alive members, one leader
	writeTimeout   = 60 * time.Second // a deploy succeeds, retried
	convergeWithin = 60 * time.Second // a node serves a version the cluster has
	cliTimeout     = 90 * time.Second // one gojinn-node client command

	// deadServerTimeout is cluster.dead_server_timeout in the containers:
	// longer than the test's partition can last (writeTimeout plus the
	// checks on the cut-off node).
	deadServerTimeout = "3m"
)

// engine runs docker commands, each bounded by its own timeout and by ctx.
type engine struct {
	t   *testing.T
	ctx context.Context
}

// run runs `docker args...` and returns its stdout; an error carries the
// command and its stderr.
func (e engine) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// must is run that fails the test on error; it returns trimmed stdout.
func (e engine) must(timeout time.Duration, args ...string) string {
	e.t.Helper()
	out, err := e.run(timeout, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// requireDocker skips the test unless GOJINN_DOCKER_TEST is set and the
// docker client is installed, and fails it when the daemon does not answer:
// CI sets the switch on a machine with Docker, so a dead daemon is a
// failure there, not a reason to skip.
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("GOJINN_DOCKER_TEST") == "" {
		t.Skip("builds an image and starts three containers: run `make docker-test` (sets GOJINN_DOCKER_TEST=1; needs a Docker engine)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("GOJINN_DOCKER_TEST is set but the docker client is not installed")
	}
	e := engine{t: t, ctx: context.Background()}
	if _, err := e.run(20*time.Second, "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Fatalf("the Docker daemon does not answer (is it running, and may this user use its socket?): %v", err)
	}
}

// uniqueID names this run's image, network and containers, so runs on
// one engine do not collide.
func uniqueID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildImage builds the static binary and the image from
// deploy/docker/Dockerfile with the same context layout the documented
// `tar -c bin/gojinn-node deploy/docker | docker build ...` sends. It
// returns the host copy of the binary, used as the CLI.
func buildImage(t *testing.T, d engine, root, tag string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "gojinn-node")
	ctx, cancel := context.WithTimeout(d.ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/gojinn-node")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (static, CGO_ENABLED=0): %v\n%s", err, out)
	}
	if err := copyTree(filepath.Join(root, "deploy", "docker"), filepath.Join(dir, "deploy", "docker")); err != nil {
		t.Fatalf("build context: %v", err)
	}
	d.must(buildTimeout, "build", "-q", "-t", tag, "--label", "gojinn.dockertest=1",
		"-f", filepath.Join(dir, "deploy", "docker", "Dockerfile"), dir)
	t.Cleanup(func() {
		_, _ = engine{t: t, ctx: context.Background()}.run(dockerTimeout, "rmi", "-f", tag)
	})
	return bin
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("copy %s: %w", path, err)
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// createNetwork creates a user network with a subnet of its own, which
// `docker network connect --ip` needs to give a reconnected container its
// old address back. The subnet is the one the engine picks for a probe
// network, so it avoids the host's routes and other networks.
func createNetwork(t *testing.T, d engine, name string) {
	t.Helper()
	probe := name + "-probe"
	d.must(dockerTimeout, "network", "create", "--label", "gojinn.dockertest=1", probe)
	subnet := d.must(dockerTimeout, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", probe)
	d.must(dockerTimeout, "network", "rm", probe)
	if subnet == "" {
		t.Fatalf("network %s: the engine assigned no subnet", probe)
	}
	d.must(dockerTimeout, "network", "create", "--label", "gojinn.dockertest=1", "--subnet", subnet, name)
	t.Cleanup(func() {
		_, _ = engine{t: t, ctx: context.Background()}.run(dockerTimeout, "network", "rm", name)
	})
}

// waitFor polls check until it returns nil and says how long that took;
// once timeout has passed or ctx has ended it fails the test with check's
// last error.
func waitFor(ctx context.Context, t *testing.T, what string, timeout time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (last error: %v)", what, context.Cause(ctx), err)
		case <-tick.C:
		}
	}
}

// node is one gojinn-node container.
type node struct {
	name      string // container name, also its host name on the network
	id        string // Raft server ID, from the banner
	admin     string // 127.0.0.1:PORT published for the admin API
	http      string // 127.0.0.1:PORT published for plain HTTP
	https     string // 127.0.0.1:PORT published for HTTPS over TCP
	token     string // admin token, printed once
	joinToken string // only on the node that bootstrapped
}

var (
	peerRE  = regexp.MustCompile(`(?m)^\s+peer:\s+\S+ \(node (\S+);`)
	joinRE  = regexp.MustCompile(`cluster join token \([^)]*\): (\S+)`)
	adminRE = regexp.MustCompile(`admin token \([^)]*\): (\S+)`)
)

// bannerDone is the banner's last line with tls.mode internal.
const bannerDone = "trust the internal CA"

// fleet is the cluster under test: containers from one image on one
// network, driven from the host through published loopback ports.
type fleet struct {
	t       *testing.T
	ctx     context.Context
	d       engine
	cli     string // the host's gojinn-node, as the CLI
	image   string
	network string
	prefix  string
	nodes   []*node
	client  *http.Client
}

// start runs container i (1-based) and waits for its banner. Extra
// arguments follow `agent`.
func (f *fleet) start(i int, extra ...string) *node {
	f.t.Helper()
	n := &node{name: fmt.Sprintf("%s-n%d", f.prefix, i)}
	args := []string{"run", "-d", "--name", n.name, "--hostname", n.name, "--network", f.network,
		"--label", "gojinn.dockertest=1",
		"-p", "127.0.0.1::8080", "-p", "127.0.0.1::8443", "-p", "127.0.0.1::9090",
		"-e", "GOJINN_NODE_NAME=" + n.name,
		"-e", "GOJINN_RAFT_ADVERTISE=" + n.name + ":7947",
		"-e", "GOJINN_CLUSTER_PEER_ADVERTISE=" + n.name + ":7948",
		// The partition lasts about 25 s; the default 30 s would be too
		// close: the leader would remove the cut-off node for good.
		"-e", "GOJINN_CLUSTER_DEAD_SERVER_TIMEOUT=" + deadServerTimeout,
		f.image, "agent"}
	f.d.must(dockerTimeout, append(args, extra...)...)
	f.t.Cleanup(func() {
		d := engine{t: f.t, ctx: context.Background()}
		if f.t.Failed() {
			f.t.Logf("last output of %s:\n%s", n.name, logTail(n.name))
		}
		_, _ = d.run(dockerTimeout, "rm", "-f", "-v", n.name)
	})

	var banner string
	waitFor(f.ctx, f.t, n.name+" prints its banner", startTimeout, func() error {
		out, err := f.d.run(dockerTimeout, "logs", n.name)
		if err != nil {
			return err
		}
		if banner = out; strings.Contains(out, bannerDone) {
			return nil
		}
		if running, _ := f.d.run(dockerTimeout, "inspect", "-f", "{{.State.Running}}", n.name); strings.TrimSpace(running) == "false" {
			f.t.Fatalf("%s exited before its banner:\n%s", n.name, logTail(n.name))
		}
		return fmt.Errorf("no %q line yet", bannerDone)
	})
	if m := peerRE.FindStringSubmatch(banner); m != nil {
		n.id = m[1]
	}
	if m := adminRE.FindStringSubmatch(banner); m != nil {
		n.token = m[1]
	}
	if m := joinRE.FindStringSubmatch(banner); m != nil {
		n.joinToken = m[1]
	}
	if n.id == "" || n.token == "" {
		f.t.Fatalf("%s: banner lacks the peer line or the admin token:\n%s", n.name, banner)
	}
	n.admin, n.http, n.https = f.port(n, "9090/tcp"), f.port(n, "8080/tcp"), f.port(n, "8443/tcp")
	f.nodes = append(f.nodes, n)
	return n
}

// logTail returns the last lines a container wrote, stdout and stderr
// together, for a failure message.
func logTail(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "logs", "--tail", "40", name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s(docker logs: %v)", out, err)
	}
	return string(out)
}

// port returns the 127.0.0.1:PORT the engine published a container port on.
func (f *fleet) port(n *node, p string) string {
	f.t.Helper()
	out := f.d.must(dockerTimeout, "port", n.name, p)
	first, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(first, "127.0.0.1:") {
		f.t.Fatalf("%s: port %s published on %q, want 127.0.0.1 only", n.name, p, out)
	}
	return first
}

// ip returns n's address on the test network.
func (f *fleet) ip(n *node) string {
	f.t.Helper()
	return f.d.must(dockerTimeout, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+f.network+`").IPAddress}}`, n.name)
}

// gojinn runs the host's gojinn-node client against n's admin API.
func (f *fleet) gojinn(n *node, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(f.ctx, cliTimeout)
	defer cancel()
	args = append(args, "--addr", "http://"+n.admin, "--token", n.token)
	cmd := exec.CommandContext(ctx, f.cli, args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("gojinn-node %s (via %s): %w: %s", args[0], n.name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// members is `gojinn-node members --json` through n.
func (f *fleet) members(n *node) ([]cluster.MemberInfo, error) {
	out, err := f.gojinn(n, "members", "--json")
	if err != nil {
		return nil, err
	}
	var list []cluster.MemberInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("members --json: %w: %q", err, out)
	}
	return list, nil
}

// byID returns the node whose Raft server ID is id.
func (f *fleet) byID(id string) *node {
	for _, n := range f.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// deploy deploys file as name through n, retrying while the cluster
// cannot take writes (an election, a forward to a leader that is gone),
// and says how long it took.
func (f *fleet) deploy(n *node, name, file, route string) time.Duration {
	f.t.Helper()
	return waitFor(f.ctx, f.t, "deploy "+name+" through "+n.name, writeTimeout, func() error {
		out, err := f.gojinn(n, "deploy", name, file, "--route", route)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "deployed "+name+" version") {
			return fmt.Errorf("deploy output %q", out)
		}
		return nil
	})
}

// get sends GET url and returns the status and body.
func (f *fleet) get(client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// serves waits until n answers path with 200 and a body containing want.
func (f *fleet) serves(n *node, path, want string, timeout time.Duration) time.Duration {
	f.t.Helper()
	return waitFor(f.ctx, f.t, n.name+" serves "+path+" with "+want, timeout, func() error {
		code, body, err := f.get(f.client, "http://"+n.http+path)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, want) {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}
