// Package runtimetest builds guest modules for tests: Go guests with the
// real Go toolchain (GOOS=wasip1) and WAT guests with wabt's wat2wasm.
// Outputs are cached by content hash under the OS temp directory, so a
// guest is linked once per source change rather than once per test.
package runtimetest

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

var mu sync.Mutex // serializes builds within one test binary

// ModuleRoot returns the directory holding the gojinn go.mod.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command(goBin(), "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		tb.Fatal("not inside the gojinn module")
	}
	return filepath.Dir(mod)
}

// BuildGo compiles the Go guest package in dir (relative to the module
// root, e.g. "examples/hello") and returns the module bytes. With reactor
// set it builds with -buildmode=c-shared, giving the pooled ABI.
func BuildGo(tb testing.TB, dir string, reactor bool) []byte {
	tb.Helper()
	root := ModuleRoot(tb)
	src := filepath.Join(root, dir)
	key := hashTree(tb, src, filepath.Join(root, "sdk", "go"), filepath.Join(root, "go.mod"))
	mode := "command"
	if reactor {
		mode = "reactor"
	}
	out := cachePath(key, filepath.Base(dir)+"."+mode+".wasm")
	mu.Lock()
	defer mu.Unlock()
	if b, err := os.ReadFile(out); err == nil {
		return b
	}
	args := []string{"build", "-trimpath", "-o", out + ".tmp"}
	if reactor {
		args = append(args, "-buildmode=c-shared")
	}
	cmd := exec.Command(goBin(), append(args, "./"+filepath.ToSlash(dir))...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building guest %s (%s): %v\n%s", dir, mode, err, b)
	}
	return finish(tb, out)
}

// WAT assembles a WebAssembly text file (relative to the module root)
// with wat2wasm from Debian's wabt package (`make deps` installs it).
func WAT(tb testing.TB, file string) []byte {
	tb.Helper()
	root := ModuleRoot(tb)
	src := filepath.Join(root, file)
	key := hashTree(tb, src)
	out := cachePath(key, filepath.Base(file)+".wasm")
	mu.Lock()
	defer mu.Unlock()
	if b, err := os.ReadFile(out); err == nil {
		return b
	}
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		tb.Fatalf("wat2wasm not found: run `make deps` (installs Debian's wabt): %v", err)
	}
	if b, err := exec.Command(tool, src, "-o", out+".tmp").CombinedOutput(); err != nil {
		tb.Fatalf("wat2wasm %s: %v\n%s", file, err, b)
	}
	return finish(tb, out)
}

func finish(tb testing.TB, out string) []byte {
	tb.Helper()
	if err := os.Rename(out+".tmp", out); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func cachePath(key, name string) string {
	dir := filepath.Join(os.TempDir(), "gojinn-guests")
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, key[:16]+"-"+name)
}

// hashTree hashes every file under the given paths (files or folders),
// with the Go version, so a change to any source rebuilds the guest.
func hashTree(tb testing.TB, paths ...string) string {
	tb.Helper()
	h := sha256.New()
	h.Write([]byte(runtime.Version()))
	for _, p := range paths {
		var files []string
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && !strings.HasSuffix(path, "_test.go") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("hashing %s: %v", p, err)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatal(err)
			}
			h.Write([]byte(f))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func goBin() string { return "go" }

// CacheDir returns a wazero compilation cache directory shared by every
// test process on the machine, so each guest is compiled once rather than
// once per test. Tests of the cache itself use their own directory.
func CacheDir() string {
	return filepath.Join(os.TempDir(), "gojinn-wazero-cache")
}
