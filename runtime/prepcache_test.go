package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/gojinn/gojinn/runtime/runtimetest"
	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// TestPrepCache checks that a prepared module survives the round trip to
// disk, that a damaged or truncated file is ignored, and that an engine
// restarted on the same directory loads the prepared bytes, runs them, and
// replaces a damaged file.
func TestPrepCache(t *testing.T) {
	bin := runtimetest.WAT(t, "runtime/testdata/wat/tiny-reactor.wat")
	hash := sha256.Sum256(bin)
	c := prepCache{dir: t.TempDir()}
	if c.load(hash) != nil {
		t.Fatal("empty cache returned an entry")
	}
	p, err := prepare(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.store(hash, p); err != nil {
		t.Fatal(err)
	}
	got := c.load(hash)
	if got == nil || !bytes.Equal(got.bin, p.bin) || got.safe != p.safe || len(got.globals) != len(p.globals) {
		t.Fatalf("round trip: got %+v, want %+v", got, p)
	}
	for i, g := range p.globals {
		if got.globals[i] != g {
			t.Fatalf("global %d: got %+v, want %+v", i, got.globals[i], g)
		}
	}

	file, err := os.ReadFile(c.path(hash))
	if err != nil {
		t.Fatal(err)
	}
	// A valid file under another module's name (swapped or copied) is
	// not taken for that module: it would run the other module's code.
	other := sha256.Sum256([]byte("another module"))
	if err := os.WriteFile(c.path(other), file, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.load(other) != nil {
		t.Fatal("a file prepared from another module was accepted")
	}
	for _, bad := range [][]byte{file[:len(file)-1], flip(file, len(file)-1), flip(file, 2), flip(file, 9), file[:6]} {
		if err := os.WriteFile(c.path(hash), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if c.load(hash) != nil {
			t.Fatal("a damaged file was accepted")
		}
	}

	// An engine finds the damaged entry useless, prepares the module
	// again and rewrites the entry; a second engine then uses it.
	for round := range 2 {
		cfg := DefaultConfig()
		cfg.CacheDir = c.dir
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		e, err := NewEngine(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		f, err := e.Load(context.Background(), FunctionSpec{Name: "tiny", Module: bin, Mode: ModePooled})
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"})
		if err != nil || res.Response.StatusOrDefault() != 200 {
			t.Fatalf("round %d: invoke: %v %+v", round, err, res)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if c.load(hash) == nil {
			t.Fatalf("round %d: no valid cache entry after a load", round)
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x40
	return b
}
