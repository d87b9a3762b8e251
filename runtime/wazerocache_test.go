package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/gojinn/gojinn/sdk/go/protocol"
)

// A damaged wazero cache file does not block its module: wazero fails the
// compilation on it (a checksum mismatch, a short read) rather than
// compiling, so the engine removes the file and compiles again, and the
// file is rewritten. Before, every Load and Check of the module failed
// with ErrInvalidModule until someone removed the file by hand. Both
// runtimes (instrumented, and wazero's own checks for a start section).
func TestDamagedWazeroCacheFileIsReplaced(t *testing.T) {
	for _, wat := range []string{"tiny-reactor", "start-section"} {
		for _, damage := range []struct {
			name string
			fn   func(t *testing.T, file []byte) []byte
		}{
			{"flipped-code-byte", func(t *testing.T, file []byte) []byte {
				b := bytes.Clone(file)
				b[wazeroCodeOffset(t, file)] ^= 0x40
				return b
			}},
			{"truncated", func(t *testing.T, file []byte) []byte { return file[:wazeroCodeOffset(t, file)+1] }},
		} {
			t.Run(wat+"/"+damage.name, func(t *testing.T) {
				dir := t.TempDir()
				bin := artifactWAT(t, wat)
				spec := FunctionSpec{Name: "f", Module: bin, Mode: ModePooled}

				e := cacheEngine(t, dir)
				if err := e.Check(context.Background(), spec); err != nil {
					t.Fatal(err)
				}
				if err := e.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				names := wazeroFiles(t, e)
				if len(names) != 1 {
					t.Fatalf("wazero cache holds %v, want one file", names)
				}
				path := filepath.Join(wazeroCacheDir(dir), names[0])
				file, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				bad := damage.fn(t, file)
				if err := os.WriteFile(path, bad, 0o600); err != nil {
					t.Fatal(err)
				}

				for round := range 2 { // the second round loads the rewritten file
					e := cacheEngine(t, dir)
					f, err := e.Load(context.Background(), spec)
					if err != nil {
						t.Fatalf("round %d: load: %v", round, err)
					}
					res, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"})
					if err != nil || string(res.Response.Body) != "hello, wasm!\n" {
						t.Fatalf("round %d: invoke: %v %+v", round, err, res)
					}
					if err := e.Close(context.Background()); err != nil {
						t.Fatal(err)
					}
					got, err := os.ReadFile(path)
					if err != nil {
						t.Fatalf("round %d: the cache file was not rewritten: %v", round, err)
					}
					if bytes.Equal(got, bad) {
						t.Fatalf("round %d: the damaged cache file is still there", round)
					}
				}
			})
		}
	}
}

// cacheEngine starts an engine on the cache directory dir, closed by the
// test's end if the test has not closed it.
func cacheEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CacheDir = dir
	cfg.Logger = slog.New(slog.DiscardHandler)
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// wazeroCodeOffset is where the machine code starts in a wazero v1.12.0
// cache file: magic, version length and version, function count, an
// 8-byte offset per function, then the code's 8-byte length.
func wazeroCodeOffset(t *testing.T, file []byte) int {
	t.Helper()
	if len(file) < len(wazeroMagic)+1 || !bytes.Equal(file[:len(wazeroMagic)], wazeroMagic) {
		t.Fatalf("not a wazero cache file: % x", file[:min(len(file), 16)])
	}
	off := len(wazeroMagic) + 1 + int(file[len(wazeroMagic)])
	if len(file) < off+4 {
		t.Fatal("wazero cache file too short")
	}
	off += 4 + 8*int(binary.LittleEndian.Uint32(file[off:])) + 8
	if off >= len(file) {
		t.Fatalf("wazero cache file of %d bytes has no code after offset %d", len(file), off)
	}
	return off
}

// A compilation cache that cannot be written (a full disk; here its
// directory replaced by a dangling symlink, so that reading finds no file
// and writing fails, as on a full disk) does not make a good module
// "invalid": wazero fails CompileModule after compiling, the engine loads
// the code it kept in memory and warns. Before, the module was refused as invalid
// and never retried, so deployed functions stopped serving after a
// restart on a full disk.
func TestUnwritableWazeroCacheStillLoads(t *testing.T) {
	dir := t.TempDir()
	e := cacheEngine(t, dir)
	defer e.Close(context.Background())
	cache := wazeroCacheDir(dir)
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), cache); err != nil {
		t.Fatal(err)
	}
	f, err := e.Load(context.Background(), FunctionSpec{Name: "f", Module: artifactWAT(t, "tiny-reactor"), Mode: ModePooled})
	if err != nil {
		t.Fatalf("load with an unwritable compilation cache: %v", err)
	}
	res, err := f.Invoke(context.Background(), &protocol.Request{Method: "GET", URI: "/", Path: "/"})
	if err != nil || string(res.Response.Body) != "hello, wasm!\n" {
		t.Fatalf("invoke: %v %+v", err, res)
	}
}
