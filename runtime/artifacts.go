package runtime

import (
	"bufio"
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
)

// Compiled artifacts let a node skip the compiler: a module's prepared
// form (the prep-v1 file) and wazero's machine code for it (its
// compilation-cache file), exported by a node that compiled the module and
// imported into another node's CacheDir, so that the next Load there is a
// disk-cache hit. The machine code runs unchecked, so artifacts must only
// come from a party as trusted as the node itself (in a cluster: a peer
// authenticated by the cluster CA).

var (
	// ErrNoArtifacts: this engine holds no compiled artifacts for the
	// module (not compiled here, no CacheDir, or an unidentified wazero).
	ErrNoArtifacts = errors.New("runtime: no compiled artifacts for this module")
	// ErrArtifactsRefused: ImportArtifacts would not use what it was given
	// (another compiler or platform, a wrong key, damaged files); the node
	// compiles the module itself instead.
	ErrArtifactsRefused = errors.New("runtime: compiled artifacts refused")
)

// ArtifactInfo identifies the compiled artifacts of one module: which
// upload, which prepared-module format and which compiler they are for.
type ArtifactInfo struct {
	// Module is the hex sha256 of the upload.
	Module string `json:"module"`
	// Format is the prepared-module format (prepVersion).
	Format string `json:"format"`
	// Wazero is the wazero version that compiled the code, or for a build
	// that does not record it, "dev+exe-sha256:" and the executable's hash.
	Wazero string `json:"wazero"`
	// Platform is GOOS/GOARCH of the compiling node.
	Platform string `json:"platform"`
	// Key is the hex name of wazero's cache file: a hash of the prepared
	// bytes, the termination mode and the CPU features the code uses.
	Key string `json:"key"`
	// PrepSize and CodeSize are the two files' lengths in bytes.
	PrepSize int64 `json:"prep_size"`
	CodeSize int64 `json:"code_size"`
}

// Artifacts is an ArtifactInfo with the two files' contents, to be read
// in order: all of Prep, then Code (they may share one stream).
type Artifacts struct {
	ArtifactInfo
	Prep  io.Reader
	Code  io.Reader
	close func() error
}

// Close releases the files behind an exported set.
func (a *Artifacts) Close() error {
	if a.close == nil {
		return nil
	}
	return a.close()
}

// MaxArtifactBytes bounds the artifacts this engine exports or imports
// for one module: compiled code is a few times the module's size, so 8x
// Config.MaxModuleBytes.
func (e *Engine) MaxArtifactBytes() int64 { return 8 * int64(e.cfg.MaxModuleBytes) }

// maxPrepBytes bounds a prepared module: the upload, plus what the
// rewrite adds (a few bytes per loop and per exported global).
func (e *Engine) maxPrepBytes() int64 { return 2*int64(e.cfg.MaxModuleBytes) + 1<<20 }

// Artifacts returns the compiled artifacts this engine's disk caches hold
// for the upload whose sha256 is hash, or ErrNoArtifacts. The caller
// closes the result.
func (e *Engine) Artifacts(hash [32]byte) (*Artifacts, error) {
	if e.cfg.CacheDir == "" || compilerID() == "" {
		return nil, ErrNoArtifacts
	}
	prep := prepCache{dir: e.cfg.CacheDir}
	b, err := readFileMax(prep.path(hash), e.MaxArtifactBytes())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoArtifacts, err)
	}
	p := decodePrep(b, hash)
	if p == nil {
		return nil, fmt.Errorf("%w: the prepared module's file is damaged", ErrNoArtifacts)
	}
	key := wazeroCacheKey(p.bin, p.safe)
	f, err := os.Open(filepath.Join(wazeroCacheDir(e.cfg.CacheDir), hex.EncodeToString(key[:])))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoArtifacts, err)
	}
	st, err := f.Stat()
	if err == nil && int64(len(b))+st.Size() > e.MaxArtifactBytes() {
		err = fmt.Errorf("%d bytes of compiled code, more than %d", st.Size(), e.MaxArtifactBytes())
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %w", ErrNoArtifacts, err)
	}
	return &Artifacts{
		ArtifactInfo: ArtifactInfo{
			Module: hex.EncodeToString(hash[:]), Format: prepVersion, Wazero: compilerID(), Platform: platform(),
			Key: hex.EncodeToString(key[:]), PrepSize: int64(len(b)), CodeSize: st.Size(),
		},
		Prep: bytes.NewReader(b), Code: f, close: f.Close,
	}, nil
}

// HasArtifacts reports whether the disk caches hold both artifacts of the
// upload whose sha256 is hash, so a Load would not compile it.
func (e *Engine) HasArtifacts(hash [32]byte) bool {
	a, err := e.Artifacts(hash)
	if err != nil {
		return false
	}
	_ = a.Close()
	return true
}

// ImportArtifacts checks artifacts another node exported for the upload
// whose sha256 is hash and writes them into this engine's disk caches, so
// the next Load of that upload reads them instead of compiling. Anything
// that does not match this node (wazero version, platform, CPU features,
// prepared format) or does not verify (sizes, the prepared module's
// checksum, the cache key recomputed from the prepared bytes, the
// structure and checksum of the code file) is refused with
// ErrArtifactsRefused before anything is written. The code itself cannot
// be verified: only import artifacts from a party as trusted as this node.
func (e *Engine) ImportArtifacts(hash [32]byte, a *Artifacts) error {
	if err := e.importArtifacts(hash, a); err != nil {
		return fmt.Errorf("%w: %w", ErrArtifactsRefused, err)
	}
	return nil
}

func (e *Engine) importArtifacts(hash [32]byte, a *Artifacts) error {
	switch limit := e.MaxArtifactBytes(); {
	case e.cfg.CacheDir == "":
		return errors.New("the engine has no CacheDir")
	case compilerID() == "":
		return errors.New("this build's wazero version is unknown")
	case a.Module != hex.EncodeToString(hash[:]):
		return fmt.Errorf("artifacts are for module %q", a.Module)
	case a.Format != prepVersion:
		return fmt.Errorf("prepared format %q, this node uses %q", a.Format, prepVersion)
	case a.Wazero != compilerID():
		return fmt.Errorf("compiled by wazero %q, this node runs %q", a.Wazero, compilerID())
	case a.Platform != platform():
		return fmt.Errorf("compiled for %s, this node is %s", a.Platform, platform())
	case a.PrepSize <= 0 || a.CodeSize <= 0 || a.PrepSize > limit || a.CodeSize > limit-a.PrepSize:
		return fmt.Errorf("sizes %d + %d bytes, the node accepts 1 to %d in all", a.PrepSize, a.CodeSize, limit)
	case a.PrepSize > e.maxPrepBytes():
		// Read into memory below: refuse before allocating.
		return fmt.Errorf("prepared module of %d bytes, more than %d", a.PrepSize, e.maxPrepBytes())
	}
	b := make([]byte, a.PrepSize)
	if _, err := io.ReadFull(a.Prep, b); err != nil {
		return fmt.Errorf("reading the prepared module: %w", err)
	}
	p := decodePrep(b, hash)
	if p == nil {
		return errors.New("the prepared module's checksum or metadata does not verify")
	}
	if key := wazeroCacheKey(p.bin, p.safe); a.Key != hex.EncodeToString(key[:]) {
		return fmt.Errorf("cache key %s, this node's wazero would look for %x (another CPU feature set?)", a.Key, key)
	}
	codePath := filepath.Join(wazeroCacheDir(e.cfg.CacheDir), a.Key)
	if err := writeVerified(codePath, io.LimitReader(a.Code, a.CodeSize), a.CodeSize); err != nil {
		return err
	}
	// The code first: a prepared module on disk never points Load at code
	// that is not there yet, and code without its prepared module is only
	// an unused cache file (Load prepares the upload and finds it).
	if err := writeAtomic(prepCache{dir: e.cfg.CacheDir}.path(hash), bytes.NewReader(b)); err != nil {
		return fmt.Errorf("writing the prepared module: %w", err)
	}
	e.log.Debug("compiled artifacts imported", "sha256", a.Module, "code_bytes", a.CodeSize)
	return nil
}

// writeVerified streams size bytes of a wazero cache file from r into a
// temporary file beside path, checks its structure and checksum, and
// renames it to path.
func writeVerified(path string, r io.Reader, size int64) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	err = func() error {
		n, err := io.Copy(f, r)
		if err != nil {
			return fmt.Errorf("receiving the compiled code: %w", err)
		}
		if n != size {
			return fmt.Errorf("compiled code: %d bytes, announced %d", n, size)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := checkWazeroFile(bufio.NewReaderSize(f, 64<<10), size); err != nil {
			return fmt.Errorf("compiled code: %w", err)
		}
		return f.Close()
	}()
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	return err
}

// checkWazeroFile reads a wazero v1.12 cache file (engine_cache.go's
// serializeCompiledModule) of size bytes and checks everything wazero
// would, and that nothing follows: magic, this wazero's version, the
// function offsets, the machine code and its CRC-32C, the source map and
// the catch-clause table.
func checkWazeroFile(r *bufio.Reader, size int64) error {
	left := size
	next := func(n int64) ([]byte, error) {
		if n < 0 || n > left {
			return nil, errors.New("truncated or inconsistent lengths")
		}
		left -= n
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	skip := func(n int64) error {
		if n < 0 || n > left {
			return errors.New("truncated or inconsistent lengths")
		}
		left -= n
		_, err := r.Discard(int(n))
		return err
	}
	u32 := func() (uint32, error) {
		b, err := next(4)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(b), nil
	}
	u64 := func() (int64, error) {
		b, err := next(8)
		if err != nil {
			return 0, err
		}
		v := binary.LittleEndian.Uint64(b)
		if v > uint64(size) {
			return 0, errors.New("truncated or inconsistent lengths")
		}
		return int64(v), nil
	}
	v := wazeroVersion()
	head, err := next(int64(len(wazeroMagic) + 1 + len(v)))
	if err != nil {
		return err
	}
	if !bytes.Equal(head[:len(wazeroMagic)], wazeroMagic) || int(head[len(wazeroMagic)]) != len(v) || string(head[len(wazeroMagic)+1:]) != v {
		return fmt.Errorf("not a cache file of wazero %s", v)
	}
	funcs, err := u32()
	if err != nil {
		return err
	}
	if err := skip(8 * int64(funcs)); err != nil {
		return err
	}
	codeLen, err := u64()
	if err != nil {
		return err
	}
	if codeLen > left {
		return errors.New("truncated or inconsistent lengths")
	}
	left -= codeLen
	crc := crc32.New(castagnoli)
	if _, err := io.CopyN(crc, r, codeLen); err != nil {
		return err
	}
	sum, err := u32()
	if err != nil {
		return err
	}
	if crc.Sum32() != sum {
		return errors.New("machine code checksum mismatch")
	}
	flag, err := next(1)
	if err != nil {
		return err
	}
	if flag[0] == 1 {
		n, err := u64()
		if err != nil {
			return err
		}
		if n > left/16 {
			return errors.New("truncated or inconsistent lengths")
		}
		if err := skip(16 * n); err != nil {
			return err
		}
	}
	tables, err := u32()
	if err != nil {
		return err
	}
	for range tables {
		clauses, err := u32()
		if err != nil {
			return err
		}
		if err := skip(5 * int64(clauses)); err != nil {
			return err
		}
	}
	if left != 0 {
		return fmt.Errorf("%d unexpected bytes at the end", left)
	}
	return nil
}

// readFileMax reads a file of at most limit bytes.
func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, err
}

// The wire form of Artifacts: magic, a uvarint length and that many bytes
// of ArtifactInfo as JSON, then the prepared module and the code.
var artifactsMagic = [4]byte{'G', 'J', 'A', 1}

// maxArtifactHeader bounds the JSON header of the wire form.
const maxArtifactHeader = 4 << 10

// WriteArtifacts writes a in its wire form to w.
func WriteArtifacts(w io.Writer, a *Artifacts) error {
	info, err := json.Marshal(a.ArtifactInfo)
	if err != nil {
		return err
	}
	head := binary.AppendUvarint(append([]byte(nil), artifactsMagic[:]...), uint64(len(info)))
	if _, err := w.Write(append(head, info...)); err != nil {
		return err
	}
	if _, err := io.CopyN(w, a.Prep, a.PrepSize); err != nil {
		return fmt.Errorf("sending the prepared module: %w", err)
	}
	if _, err := io.CopyN(w, a.Code, a.CodeSize); err != nil {
		return fmt.Errorf("sending the compiled code: %w", err)
	}
	return nil
}

// ReadArtifacts reads the header of the wire form from r and returns
// Artifacts whose Prep and Code stream the rest of r, refusing sets
// larger than limit bytes.
func ReadArtifacts(r io.Reader, limit int64) (*Artifacts, error) {
	br := bufio.NewReader(r)
	var magic [4]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, fmt.Errorf("%w: reading the header: %w", ErrArtifactsRefused, err)
	}
	if magic != artifactsMagic {
		return nil, fmt.Errorf("%w: not a compiled artifact stream", ErrArtifactsRefused)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > maxArtifactHeader {
		return nil, fmt.Errorf("%w: bad header length", ErrArtifactsRefused)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(br, info); err != nil {
		return nil, fmt.Errorf("%w: reading the header: %w", ErrArtifactsRefused, err)
	}
	a := &Artifacts{}
	if err := json.Unmarshal(info, &a.ArtifactInfo); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrArtifactsRefused, err)
	}
	if a.PrepSize < 0 || a.CodeSize < 0 || a.PrepSize > limit || a.CodeSize > limit-a.PrepSize {
		return nil, fmt.Errorf("%w: %d + %d bytes, more than %d", ErrArtifactsRefused, a.PrepSize, a.CodeSize, limit)
	}
	a.Prep = io.LimitReader(br, a.PrepSize)
	a.Code = io.LimitReader(br, a.CodeSize)
	return a, nil
}
