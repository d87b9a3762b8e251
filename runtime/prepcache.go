package runtime

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/gojinn/gojinn/runtime/internal/wasmbin"
)

// prepVersion names the output of prepare. Bump it whenever wasmbin's
// rewriting or the limits CheckLimits enforces change, so that modules
// prepared by an older node are prepared again rather than reused.
const prepVersion = "prep-v7" // v2: checks at function entry; v3: bulk memory instructions charged by length; v4: and yield after the charge (wasmbin.InstrumentLoops); v5: start-section modules instrumented too; v6: table.init, table.copy and table.fill charged by length; v7: one table budget per module (wasmbin.CapTables, MaxTables)

// prepared is what prepare makes of an upload: the bytes wazero compiles
// and how to run them.
type prepared struct {
	bin     []byte
	safe    bool // compile with wazero's own termination checks
	stop    bool // the module carries the stop global (it was instrumented)
	globals []wasmbin.GlobalExport
}

// prepare checks an upload's limits and rewrites it (see moduleCache.compile
// for each step).
func prepare(bin []byte) (*prepared, error) {
	// First, before wazero sees the bytes: its decoder allocates declared
	// vector lengths up front, so a few hostile bytes could exhaust memory.
	if err := wasmbin.CheckLimits(bin); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	// Cap table growth, for the module's tables together: wazero
	// allocates a table.grow at once, so an unbounded grow would be a
	// fatal out-of-memory for the whole node. The capped maxima are what
	// the function's memory limit is charged for (module.memoryFits).
	bin, err := wasmbin.CapTables(bin, wasmbin.MaxTableGrowth)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	safe, stop := false, true
	instrumented, err := wasmbin.InstrumentLoops(bin)
	switch {
	case errors.Is(err, wasmbin.ErrUnsupportedInstruction):
		// wazero watches the context instead, at loop headers only.
		safe, stop, instrumented = true, false, bin
	case err == nil && wasmbin.HasStartSection(bin):
		// A start section runs inside instantiation, before the host can
		// reach the stop global: wazero watches the context during it,
		// and the stop global (the instrumentation stays) the rest, which
		// also stops loop-free code wazero's checks miss.
		safe = true
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	rewritten, globals, err := wasmbin.ExportMutableGlobals(instrumented)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	return &prepared{bin: rewritten, safe: safe, stop: stop, globals: globals}, nil
}

// prepCache keeps prepared modules on disk beside wazero's compilation
// cache, keyed by the sha256 of the upload, so that a restarted node skips
// the limits check and the rewrite (about half of loading a cached module).
// The directory is trusted as much as wazero's cache, which holds machine
// code; a CRC-32C guards against torn or corrupted files, which are
// ignored and replaced.
type prepCache struct {
	dir string // "" disables the cache
}

// File layout: magic, CRC-32C of the rest, then a uvarint length and that
// many bytes of JSON metadata, then the module.
var prepMagic = [4]byte{'G', 'J', 'P', 1}

type prepMeta struct {
	// Module is the hex sha256 of the upload the file was prepared from:
	// a file under another module's name (swapped, or copied from
	// elsewhere) is not taken for that module.
	Module  string                 `json:"module"`
	Safe    bool                   `json:"safe"`
	Stop    bool                   `json:"stop"`
	Globals []wasmbin.GlobalExport `json:"globals"`
}

func (c prepCache) path(hash [32]byte) string {
	return filepath.Join(c.dir, prepVersion, hex.EncodeToString(hash[:])+".wasm")
}

// load returns the prepared module stored for hash, or nil.
func (c prepCache) load(hash [32]byte) *prepared {
	if c.dir == "" {
		return nil
	}
	b, err := os.ReadFile(c.path(hash))
	if err != nil {
		return nil
	}
	return decodePrep(b, hash)
}

// decodePrep parses a prep file prepared from the module whose sha256 is
// hash, or returns nil when it is damaged or was prepared from another
// module.
func decodePrep(b []byte, hash [32]byte) *prepared {
	if len(b) < 8 || [4]byte(b[:4]) != prepMagic {
		return nil
	}
	rest := b[8:]
	if crc32.Checksum(rest, castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return nil
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return nil
	}
	var meta prepMeta
	if json.Unmarshal(rest[k:k+int(n)], &meta) != nil || meta.Module != hex.EncodeToString(hash[:]) {
		return nil
	}
	return &prepared{bin: rest[k+int(n):], safe: meta.Safe, stop: meta.Stop, globals: meta.Globals}
}

// store writes p for hash, atomically (a reader sees the whole file or
// none). Failures only cost the next restart the work.
func (c prepCache) store(hash [32]byte, p *prepared) error {
	if c.dir == "" {
		return nil
	}
	meta, err := json.Marshal(prepMeta{Module: hex.EncodeToString(hash[:]), Safe: p.safe, Stop: p.stop, Globals: p.globals})
	if err != nil {
		return err
	}
	b := make([]byte, 8, 8+binary.MaxVarintLen64+len(meta)+len(p.bin))
	copy(b, prepMagic[:])
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(append(b, meta...), p.bin...)
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], castagnoli))
	return writeAtomic(c.path(hash), bytes.NewReader(b))
}

// writeAtomic writes r to path through a temporary file in the same
// directory and a rename, so a reader sees the whole file or none.
func writeAtomic(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := io.Copy(f, r)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(f.Name())
	}
	return werr
}

// remove deletes the entry for hash, when its bytes did not compile.
func (c prepCache) remove(hash [32]byte) {
	if c.dir != "" {
		_ = os.Remove(c.path(hash))
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
