package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/storage"
)

// A deploy checked (so compiled) on the node that takes it is loaded by
// every other node from the artifacts it fetched from a peer: the others
// compile nothing (gojinn_compilations_total{source="compiled"} stays 0;
// "disk" means the prepared module and the code came from the disk
// cache, where only the import can have put them). A module nobody has
// compiled yet still deploys everywhere: each node falls back to
// compiling.
func TestClusterDeployFetchesArtifacts(t *testing.T) {
	c := newBenchCluster(t, FastConfig(), true)
	for range 3 {
		c.start(true)
	}
	c.waitStable(3)
	origin := c.nodes[2]
	module := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	spec := storage.Spec{SHA256: benchBlob(t, origin.store, module), Mode: storage.ModePooled, Routes: []storage.Route{{Path: "/f/*"}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := origin.rec.CheckDeploy(ctx, "f", spec); err != nil {
		t.Fatal(err)
	}
	v, err := origin.store.Deploy(ctx, "f", spec)
	if err != nil {
		t.Fatal(err)
	}
	c.waitReadyAll(ctx, "f", v.Version, time.Now())
	hash, _ := parseSHA256(spec.SHA256)
	for _, n := range c.nodes {
		wantCompiled := 0.0
		if n == origin {
			wantCompiled = 1 // CheckDeploy
		}
		if got := runtimetest.Compilations(t, n.reg, runtime.SourceCompiled); got != wantCompiled {
			t.Errorf("node %d compiled %v times, want %v", n.i, got, wantCompiled)
		}
		if got := runtimetest.Compilations(t, n.reg, runtime.SourceDisk); got != 1 {
			t.Errorf("node %d loaded from its disk cache %v times, want 1", n.i, got)
		}
		if !n.engine.HasArtifacts(hash) {
			t.Errorf("node %d has no artifacts to pass on", n.i)
		}
	}

	// Nobody compiled this one before the commit: every node ends up
	// serving it all the same (from its own compile, or from a peer that
	// finished first).
	other := withCustomSection(module, "gojinn-test", []byte("unchecked"))
	spec.SHA256 = benchBlob(t, origin.store, other)
	v, err = origin.store.Deploy(ctx, "f", spec)
	if err != nil {
		t.Fatal(err)
	}
	c.waitReadyAll(ctx, "f", v.Version, time.Now())
}

// Compiled artifacts are served only to cluster nodes: over the peer
// API's mutual TLS, a client without a certificate, or with one from
// another cluster's CA, gets nothing, and a node of the cluster gets the
// artifacts.
func TestPeerArtifactsNeedClusterCert(t *testing.T) {
	dir := t.TempDir()
	ca, id, err := BootstrapIdentity(filepath.Join(dir, "a"), "node-a", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, err := BootstrapIdentity(filepath.Join(dir, "b"), "node-b", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A one-node store and an engine that has compiled a module.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := OpenStore(ctx, testConfig(t, filepath.Join(dir, "node")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rc := runtime.DefaultConfig()
	rc.CacheDir = filepath.Join(dir, "compilecache")
	rc.Logger = slog.New(slog.DiscardHandler)
	engine, err := runtime.NewEngine(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close(context.Background()) })
	module := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	sha := benchBlob(t, store, module)
	if err := engine.Check(ctx, runtime.FunctionSpec{Name: "f", Module: module, Mode: runtime.ModePooled}); err != nil {
		t.Fatal(err)
	}
	rec := NewReconciler(store, store.Blobs(), engine, nil, rc.Logger)

	// The peer API as Agent serves it.
	api, err := NewPeerAPI(PeerAPIConfig{Store: store, Artifacts: rec.Artifacts, Auth: RequireClientCert, Logger: rc.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	srv.TLS = id.APIServerTLS()
	srv.StartTLS()
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert())
	client := func(cfg *tls.Config) *PeerClient {
		return &PeerClient{HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}}
	}
	fetch := func(c *PeerClient) error {
		return c.FetchArtifacts(ctx, srv.URL, sha, 1<<30, func(a *runtime.Artifacts) error {
			return nil
		})
	}
	noCert := client(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: NodeServerName})
	if err := fetch(noCert); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without a client certificate: %v, want refused", err)
	}
	otherCA := stranger.ClientTLS()
	otherCA.RootCAs = pool
	if err := fetch(client(otherCA)); err == nil {
		t.Fatal("a certificate from another cluster's CA was accepted")
	}
	var got *runtime.ArtifactInfo
	err = client(id.ClientTLS()).FetchArtifacts(ctx, srv.URL, sha, 1<<30, func(a *runtime.Artifacts) error {
		got = &a.ArtifactInfo
		return nil
	})
	if err != nil || got == nil || got.Module != sha || got.CodeSize == 0 {
		t.Fatalf("a cluster node: %v %+v", err, got)
	}
	// Unknown modules are a 404, not an error page with anything in it.
	err = client(id.ClientTLS()).FetchArtifacts(ctx, srv.URL, strings.Repeat("0", 64), 1<<30, func(*runtime.Artifacts) error { return nil })
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown module: %v", err)
	}
}
