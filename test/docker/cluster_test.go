package dockertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/cluster"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// Bodies that tell the two deployed versions apart.
const (
	bodyV1 = "raw WAT guest read" // examples/raw-wat
	bodyV2 = "docker test v2"     // testdata/v2.wat
)

// A three-node cluster in containers, as an operator runs it: an image
// built FROM scratch around the static binary, three containers on a user
// network joined through one seed, a deploy through a joined node served
// by every node over HTTP and HTTPS, the leader cut off with `docker
// network disconnect`, a new version deployed on the majority, the old
// leader reconnected and serving that version, and a write through it;
// then every node moved to another subnet at once, electing a leader
// again and keeping its functions.
func TestDockerCluster(t *testing.T) {
	requireDocker(t)
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	root := runtimetest.ModuleRoot(t)
	dir := t.TempDir()
	v1 := writeFile(t, dir, "v1.wasm", runtimetest.WAT(t, "examples/raw-wat/main.wat"))
	v2 := writeFile(t, dir, "v2.wasm", runtimetest.WAT(t, "test/docker/testdata/v2.wat"))

	id := uniqueID(t)
	d := engine{t: t, ctx: ctx}
	f := &fleet{t: t, ctx: ctx, d: d, image: "gojinn-dockertest:" + id, network: "gjdt-" + id, prefix: "gjdt-" + id,
		client: &http.Client{Timeout: 5 * time.Second}}
	f.cli = buildImage(t, d, root, f.image)
	createNetwork(t, d, f.network)
	t.Logf("binary, image %s and network %s ready after %s", f.image, f.network, time.Since(begin).Round(time.Millisecond))

	// One seed bootstraps and prints the join token; the others enroll
	// through it.
	seed := f.start(1)
	if seed.joinToken == "" {
		t.Fatalf("%s bootstrapped but printed no join token", seed.name)
	}
	for i := 2; i <= 3; i++ {
		f.start(i, "--join", seed.name+":7948", "--join-token", seed.joinToken)
	}
	took := waitFor(ctx, t, "three alive members, one leader", clusterTimeout, func() error {
		return f.healthy(seed, f.nodes)
	})
	t.Logf("cluster formed %s after the last container started", took.Round(time.Millisecond))

	// A deploy through a joined node; every node answers, over both
	// published edge ports.
	f.deploy(f.nodes[1], "app", v1, "/app")
	for _, n := range f.nodes {
		f.serves(n, "/app", bodyV1, 10*time.Second)
		f.servesHTTPS(n, "/app", bodyV1)
	}

	// Cut the leader off; the majority elects another and takes a write.
	leader := f.leader(f.nodes[1])
	var majority []*node
	for _, n := range f.nodes {
		if n != leader {
			majority = append(majority, n)
		}
	}
	ip := f.ip(leader)
	d.must(dockerTimeout, "network", "disconnect", f.network, leader.name)
	cut := time.Now()
	took = f.deploy(majority[0], "app", v2, "/app")
	t.Logf("leader %s (%s) disconnected; deploy through %s succeeded after %s", leader.name, ip, majority[0].name, took.Round(time.Millisecond))
	if nl := f.leader(majority[1]); nl == leader {
		t.Fatalf("%s still names the disconnected %s as leader", majority[1].name, leader.name)
	}
	for _, n := range majority {
		f.serves(n, "/app", bodyV2, 10*time.Second)
	}

	// Cut off, the old leader steps down and refuses writes. Its published
	// ports went with the network, so the client runs inside it.
	waitFor(ctx, t, leader.name+" steps down", convergeWithin, func() error {
		var st cluster.Status
		if err := f.inside(leader, &st, "status", "--json"); err != nil {
			return err
		}
		if st.RaftState == "Leader" {
			return fmt.Errorf("%s: raft %s at term %d", leader.name, st.RaftState, st.Term)
		}
		return nil
	})
	if err := f.inside(leader, nil, "functions", "rm", "app"); err == nil || !strings.Contains(err.Error(), "cannot take writes") {
		t.Fatalf("a write through the cut-off %s: got %v, want a refusal saying the cluster cannot take writes", leader.name, err)
	}

	// Reconnect it at its old address: its Raft address was resolved
	// once, at start.
	d.must(dockerTimeout, "network", "connect", "--ip", ip, f.network, leader.name)
	joined := time.Now()
	t.Logf("reconnected %s after %s apart", leader.name, joined.Sub(cut).Round(time.Millisecond))
	leader.admin, leader.http, leader.https = f.port(leader, "9090/tcp"), f.port(leader, "8080/tcp"), f.port(leader, "8443/tcp")
	f.serves(leader, "/app", bodyV2, convergeWithin)
	t.Logf("%s serves the version deployed without it %s after reconnecting", leader.name, time.Since(joined).Round(time.Millisecond))
	waitFor(ctx, t, leader.name+" follows the new leader", convergeWithin, func() error {
		return f.follows(leader, majority[0])
	})

	// A write through the old leader is forwarded to the new one and
	// reaches every node.
	f.deploy(leader, "after", v1, "/after")
	for _, n := range f.nodes {
		f.serves(n, "/after", bodyV1, convergeWithin)
	}
	f.reportGossip()

	// Every node moves at once: the network is recreated on another
	// subnet (as `docker-compose down` and `up` may do), so every Raft
	// address in the configuration is stale. The nodes find each other
	// again through the seed's name and elect a leader by the addresses
	// gossip announces; the functions are still there and a write works.
	before := map[string]string{}
	for _, n := range f.nodes {
		before[n.name] = f.ip(n)
		d.must(dockerTimeout, "stop", "-t", "20", n.name)
	}
	recreateNetwork(t, d, f.network, f.nodes)
	for _, n := range f.nodes {
		d.must(dockerTimeout, "start", n.name)
	}
	for _, n := range f.nodes {
		if ip := f.ip(n); ip == before[n.name] {
			t.Fatalf("%s kept its address %s; the test needs every node moved", n.name, ip)
		}
		n.admin, n.http, n.https = f.port(n, "9090/tcp"), f.port(n, "8080/tcp"), f.port(n, "8443/tcp")
	}
	moved := time.Now()
	took = waitFor(ctx, t, "a leader and three voters after every node moved", clusterTimeout, func() error {
		return f.healthy(f.nodes[0], f.nodes)
	})
	t.Logf("every node moved (%v); the cluster elected a leader after %s", before, took.Round(time.Millisecond))
	for _, n := range f.nodes {
		f.serves(n, "/after", bodyV1, convergeWithin)
	}
	f.deploy(f.nodes[2], "moved", v2, "/moved")
	for _, n := range f.nodes {
		f.serves(n, "/moved", bodyV2, convergeWithin)
	}
	t.Logf("a deploy after the move served everywhere %s after the restart", time.Since(moved).Round(time.Millisecond))
	t.Logf("whole test: %s", time.Since(begin).Round(time.Millisecond))
}

// recreateNetwork replaces network name, whose containers nodes are
// stopped, by one of the same name on another subnet, and connects them
// to it.
func recreateNetwork(t *testing.T, d engine, name string, nodes []*node) {
	t.Helper()
	old := d.must(dockerTimeout, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", name)
	// While the old network exists, the engine gives a probe another
	// subnet.
	probe := name + "-probe2"
	d.must(dockerTimeout, "network", "create", "--label", "gojinn.dockertest=1", probe)
	subnet := d.must(dockerTimeout, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", probe)
	d.must(dockerTimeout, "network", "rm", probe)
	if subnet == "" || subnet == old {
		t.Fatalf("no other subnet than %s for the recreated network (got %q)", old, subnet)
	}
	for _, n := range nodes {
		d.must(dockerTimeout, "network", "disconnect", name, n.name)
	}
	d.must(dockerTimeout, "network", "rm", name)
	d.must(dockerTimeout, "network", "create", "--label", "gojinn.dockertest=1", "--subnet", subnet, name)
	for _, n := range nodes {
		d.must(dockerTimeout, "network", "connect", name, n.name)
	}
}

// writeFile writes b to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// healthy says whether via sees every node alive, one leader and the
// others voting.
func (f *fleet) healthy(via *node, nodes []*node) error {
	list, err := f.members(via)
	if err != nil {
		return err
	}
	roles := map[string]int{}
	for _, m := range list {
		if m.Status == "alive" {
			roles[m.Role]++
		}
	}
	if roles["leader"] != 1 || roles["voter"] != len(nodes)-1 {
		return fmt.Errorf("members seen by %s: %+v", via.name, list)
	}
	return nil
}

// leader returns the node via names as the alive Raft leader, waiting for
// one.
func (f *fleet) leader(via *node) *node {
	f.t.Helper()
	var found *node
	waitFor(f.ctx, f.t, via.name+" names a leader", clusterTimeout, func() error {
		list, err := f.members(via)
		if err != nil {
			return err
		}
		for _, m := range list {
			if m.Role == "leader" && m.Status == "alive" {
				if found = f.byID(m.Name); found == nil {
					return fmt.Errorf("leader %s is none of this test's containers", m.Name)
				}
				return nil
			}
		}
		return fmt.Errorf("no alive leader among %+v", list)
	})
	return found
}

// follows says whether n is a Raft follower of the leader peer knows.
func (f *fleet) follows(n, peer *node) error {
	var sts [2]cluster.Status
	for i, x := range []*node{n, peer} {
		out, err := f.gojinn(x, "status", "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &sts[i]); err != nil {
			return fmt.Errorf("status --json of %s: %w", x.name, err)
		}
	}
	if sts[0].RaftState != "Follower" || sts[0].Leader == "" || sts[0].Leader != sts[1].Leader {
		return fmt.Errorf("%s: raft %s, leader %q; %s: leader %q", n.name, sts[0].RaftState, sts[0].Leader, peer.name, sts[1].Leader)
	}
	return nil
}

// inside runs the gojinn-node client in n's container against its own
// admin API, decoding JSON output into out when out is not nil.
func (f *fleet) inside(n *node, out any, args ...string) error {
	args = append([]string{"exec", n.name, "/usr/local/bin/gojinn-node"}, args...)
	stdout, err := f.d.run(cliTimeout, append(args, "--addr", "http://127.0.0.1:9090", "--token", n.token)...)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			return fmt.Errorf("%s in %s: %w: %q", args[3], n.name, err, stdout)
		}
	}
	return nil
}

// servesHTTPS checks n answers path over HTTPS with a certificate from
// its internal CA, exported with the binary inside the container.
func (f *fleet) servesHTTPS(n *node, path, want string) {
	f.t.Helper()
	pem := f.d.must(dockerTimeout, "exec", n.name, "/usr/local/bin/gojinn-node", "ca", "export", "--data", "/var/lib/gojinn")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		f.t.Fatalf("%s: ca export printed no certificate: %q", n.name, pem)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	code, body, err := f.get(&http.Client{Timeout: 5 * time.Second, Transport: tr}, "https://"+n.https+path)
	if err != nil || code != http.StatusOK || !strings.Contains(body, want) {
		f.t.Fatalf("%s: GET https://%s%s: %d %q %v", n.name, n.https, path, code, body, err)
	}
}

// reportGossip fails unless every node's gossip view heals after the
// partition: memberlist never probes a member it declared dead again, so
// the nodes rejoin dead members' addresses every few seconds (the
// cluster's heal loop).
func (f *fleet) reportGossip() {
	var errs []error
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range f.nodes {
		for {
			err := f.healthy(n, f.nodes)
			if err == nil || time.Now().After(deadline) {
				errs = append(errs, err)
				break
			}
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		f.t.Fatalf("gossip views have not healed 30 s after the partition:\n%v", err)
	} else {
		f.t.Logf("gossip views healed: every node sees three alive members")
	}
}
