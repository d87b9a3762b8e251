package runtime

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// This file predicts where wazero's compilation cache (wazero v1.12.0,
// internal/engine/wazevo/engine_cache.go and internal/filecache) keeps the
// machine code of a prepared module, so that compiled code fetched from a
// peer can be filed where this node's wazero will look for it. It copies
// wazero's derivation; TestWazeroCacheKeyPrediction fails when a wazero
// upgrade changes it, and until this file follows, imports are refused
// (the predicted file is never found on the exporting side) and nodes
// simply compile.

// wazeroVersion is the version wazero stamps into its cache directory
// and files: the wazero requirement in the build's module graph, as
// wazero's internal/version.GetWazeroVersion reads it, or "dev" when the
// build does not record it (test binaries, builds outside module mode).
var wazeroVersion = sync.OnceValue(func() string {
	v := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.Contains(dep.Path, "github.com/tetratelabs/wazero") {
				v = dep.Version
			}
		}
		if v == "" || v == "(devel)" {
			v = info.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		return "dev"
	}
	return v
})

// compilerID identifies the compiler behind this node's machine code for
// other nodes: the wazero version, or, when the build does not record it
// ("dev" names no particular wazero), the sha256 of this executable, so
// that only copies of the same binary exchange code. "" when neither is
// known: nothing is exchanged then.
var compilerID = sync.OnceValue(func() string {
	if v := wazeroVersion(); v != "dev" {
		return v
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return fmt.Sprintf("dev+exe-sha256:%x", h.Sum(nil))
})

// platform names the operating system and architecture compiled code is
// for.
func platform() string { return goruntime.GOOS + "/" + goruntime.GOARCH }

// wazeroCacheDir is the directory wazero.NewCompilationCacheWithDir(dir)
// keeps its files in.
func wazeroCacheDir(dir string) string {
	return filepath.Join(dir, "wazero-"+wazeroVersion()+"-"+goruntime.GOARCH+"-"+goruntime.GOOS)
}

// wazeroMagic starts wazero's cache files and salts their keys.
var wazeroMagic = []byte("WAZEVO")

// wazeroCacheKey is the name (hex) of the cache file wazero writes for a
// module compiled from bin: sha256 of the module ID (sha256 of the bytes,
// then one byte for whether the runtime ensures termination; no function
// listeners), the magic and the CPU features the code may use.
func wazeroCacheKey(bin []byte, ensureTermination bool) [32]byte {
	h := sha256.New()
	h.Write(bin)
	term := byte(0)
	if ensureTermination {
		term = 1
	}
	h.Write([]byte{term})
	id := h.Sum(nil)
	h.Reset()
	h.Write(id)
	h.Write(wazeroMagic)
	var cpu [8]byte
	binary.LittleEndian.PutUint64(cpu[:], cpuFeatures())
	h.Write(cpu[:])
	var key [32]byte
	h.Sum(key[:0])
	return key
}
