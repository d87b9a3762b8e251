package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// artifactEngine starts an engine with its own empty CacheDir and its own
// metrics, which the test closes.
func artifactEngine(t *testing.T) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.CacheDir = t.TempDir()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Metrics = m
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e, reg
}

func artifactWAT(t *testing.T, name string) []byte {
	return runtimetest.WAT(t, "runtime/testdata/wat/"+name+".wat")
}

// wazeroFiles lists the files in e's wazero cache directory.
func wazeroFiles(t *testing.T, e *Engine) []string {
	t.Helper()
	entries, err := os.ReadDir(wazeroCacheDir(e.cfg.CacheDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range entries {
		names = append(names, d.Name())
	}
	return names
}

// The cache key and directory this package predicts are the ones wazero
// uses: after compiling a module (loop-instrumented, and one with a start
// section that wazero's own termination checks guard), the wazero cache
// holds exactly the file predicted from the prepared bytes. This fails
// when a wazero upgrade changes its key derivation, its directory naming
// or the way this package finds its version.
func TestWazeroCacheKeyPrediction(t *testing.T) {
	if compilerID() == "" {
		t.Fatal("this build's compiler cannot be identified")
	}
	for _, c := range []struct {
		wat  string
		safe bool
	}{{"tiny-reactor", false}, {"start-section", true}} {
		t.Run(c.wat, func(t *testing.T) {
			e, _ := artifactEngine(t)
			bin := artifactWAT(t, c.wat)
			if err := e.Check(context.Background(), FunctionSpec{Name: "f", Module: bin, Mode: ModePooled}); err != nil {
				t.Fatal(err)
			}
			p := prepCache{dir: e.cfg.CacheDir}.load(sha256.Sum256(bin))
			if p == nil || p.safe != c.safe {
				t.Fatalf("prepared module: %+v, want safe=%v", p, c.safe)
			}
			key := wazeroCacheKey(p.bin, p.safe)
			if got, want := wazeroFiles(t, e), []string{hex.EncodeToString(key[:])}; !equalStrings(got, want) {
				t.Fatalf("wazero cache holds %v, predicted %v", got, want)
			}
		})
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// exportArtifacts compiles bin on a fresh engine and returns its artifacts
// in wire form.
func exportArtifacts(t *testing.T, bin []byte) []byte {
	t.Helper()
	src, reg := artifactEngine(t)
	if err := src.Check(context.Background(), FunctionSpec{Name: "f", Module: bin, Mode: ModePooled}); err != nil {
		t.Fatal(err)
	}
	if runtimetest.Compilations(t, reg, SourceCompiled) != 1 {
		t.Fatal("the exporting engine did not compile")
	}
	a, err := src.Artifacts(sha256.Sum256(bin))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	var wire bytes.Buffer
	if err := WriteArtifacts(&wire, a); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()
}

// An engine with an empty CacheDir imports another engine's artifacts and
// then loads the module without compiling: the prepared module comes from
// the disk cache (gojinn_compilations_total{source="disk"}) and wazero
// reads the imported code file rather than compiling (it would replace the
// file through a rename: the file stays the same one).
func TestArtifactsRoundTrip(t *testing.T) {
	for _, name := range []string{"tiny-reactor", "start-section"} {
		t.Run(name, func(t *testing.T) {
			bin := artifactWAT(t, name)
			hash := sha256.Sum256(bin)
			wire := exportArtifacts(t, bin)

			dst, reg := artifactEngine(t)
			if dst.HasArtifacts(hash) {
				t.Fatal("a fresh engine claims artifacts")
			}
			a, err := ReadArtifacts(bytes.NewReader(wire), dst.MaxArtifactBytes())
			if err != nil {
				t.Fatal(err)
			}
			if err := dst.ImportArtifacts(hash, a); err != nil {
				t.Fatal(err)
			}
			if !dst.HasArtifacts(hash) {
				t.Fatal("no artifacts after the import")
			}
			code := filepath.Join(wazeroCacheDir(dst.cfg.CacheDir), a.Key)
			before, err := os.Stat(code)
			if err != nil {
				t.Fatal(err)
			}
			f, err := dst.Load(context.Background(), FunctionSpec{Name: "f", Module: bin, Mode: ModePooled})
			if err != nil {
				t.Fatal(err)
			}
			if d, c := runtimetest.Compilations(t, reg, SourceDisk), runtimetest.Compilations(t, reg, SourceCompiled); d != 1 || c != 0 {
				t.Fatalf("compilations: disk %v, compiled %v; want 1 and 0", d, c)
			}
			after, err := os.Stat(code)
			if err != nil || !os.SameFile(before, after) {
				t.Fatalf("wazero replaced the imported code file (it compiled): %v", err)
			}
			if got := wazeroFiles(t, dst); len(got) != 1 {
				t.Fatalf("wazero cache holds %v, want only the imported file", got)
			}
			res, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"})
			if err != nil || res.Response.StatusOrDefault() != 200 {
				t.Fatalf("invoke: %v %+v", err, res)
			}
		})
	}
}

// Artifacts that are for another compiler, platform, module or CPU, or
// that are damaged or truncated, are refused with nothing written, and
// the engine then compiles the module itself.
func TestArtifactsRefused(t *testing.T) {
	bin := artifactWAT(t, "tiny-reactor")
	hash := sha256.Sum256(bin)
	wire := exportArtifacts(t, bin)
	a, err := ReadArtifacts(bytes.NewReader(wire), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	body := wire[len(wire)-int(a.PrepSize+a.CodeSize):]
	prep, code := body[:a.PrepSize], body[a.PrepSize:]
	info := a.ArtifactInfo
	other := sha256.Sum256([]byte("another module"))

	for _, c := range []struct {
		name       string
		edit       func(i *ArtifactInfo)
		prep, code []byte
		hash       [32]byte
		want       string
	}{
		{name: "wazero version", edit: func(i *ArtifactInfo) { i.Wazero = "v1.11.0" }, want: "wazero"},
		{name: "platform", edit: func(i *ArtifactInfo) { i.Platform = "linux/riscv64" }, want: "compiled for"},
		{name: "prepared format", edit: func(i *ArtifactInfo) { i.Format = "prep-v0" }, want: "format"},
		{name: "other module", hash: other, want: "for module"},
		{name: "key for other CPU features", edit: func(i *ArtifactInfo) { i.Key = strings.Repeat("ab", 32) }, want: "cache key"},
		{name: "damaged prepared module", prep: flip(prep, len(prep)-3), want: "checksum"},
		{name: "damaged machine code", code: flip(code, len(code)/2), want: "checksum"},
		{name: "damaged code header", code: flip(code, 1), want: "not a cache file"},
		{name: "truncated code", code: code[:len(code)-1], want: "announced"},
		{name: "trailing bytes", code: append(bytes.Clone(code), 0, 0, 0, 0), edit: func(i *ArtifactInfo) { i.CodeSize += 4 }, want: "unexpected bytes"},
		{name: "too large", edit: func(i *ArtifactInfo) { i.CodeSize = 1 << 40 }, want: "sizes"},
		{name: "prepared module too large", edit: func(i *ArtifactInfo) { i.PrepSize = 300 << 20 }, want: "prepared module of"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, reg := artifactEngine(t)
			i := info
			if c.edit != nil {
				c.edit(&i)
			}
			p, k := prep, code
			if c.prep != nil {
				p = c.prep
			}
			if c.code != nil {
				k = c.code
			}
			h := hash
			if c.hash != ([32]byte{}) {
				h = c.hash
			}
			err := e.ImportArtifacts(h, &Artifacts{ArtifactInfo: i, Prep: bytes.NewReader(p), Code: bytes.NewReader(k)})
			if !errors.Is(err, ErrArtifactsRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("import: %v, want ErrArtifactsRefused saying %q", err, c.want)
			}
			if e.HasArtifacts(hash) || len(wazeroFiles(t, e)) != 0 {
				t.Fatalf("a refused import left files: %v", wazeroFiles(t, e))
			}
			if _, err := os.Stat(prepCache{dir: e.cfg.CacheDir}.path(hash)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused import left the prepared module: %v", err)
			}
			if _, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: bin, Mode: ModePooled}); err != nil {
				t.Fatal(err)
			}
			if runtimetest.Compilations(t, reg, SourceCompiled) != 1 {
				t.Fatal("the engine did not compile after refusing the artifacts")
			}
		})
	}

	// The wire form refuses what is not one, and sets over the limit.
	if _, err := ReadArtifacts(bytes.NewReader([]byte("GET / HTTP/1.1\r\n")), 1<<30); !errors.Is(err, ErrArtifactsRefused) {
		t.Fatalf("garbage stream: %v", err)
	}
	if _, err := ReadArtifacts(bytes.NewReader(wire), a.PrepSize+a.CodeSize-1); !errors.Is(err, ErrArtifactsRefused) {
		t.Fatalf("stream over the limit: %v", err)
	}
	// An engine without the module has nothing to export.
	e, _ := artifactEngine(t)
	if _, err := e.Artifacts(hash); !errors.Is(err, ErrNoArtifacts) {
		t.Fatalf("export from an empty cache: %v", err)
	}
}
