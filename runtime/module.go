package runtime

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/gojinn/gojinn/runtime/internal/wasmbin"
)

// Names of the exports that make up the guest ABI (docs/guest-protocol.md).
const (
	exportStart      = "_start"
	exportInitialize = "_initialize"
	exportReserve    = "gojinn_v1_reserve"
	exportHandle     = "gojinn_v1_handle"
	exportIdle       = "gojinn_v1_idle"
	exportMemory     = "memory"
)

// abi is how the host talks to a module.
type abi int

const (
	// abiCommand: a WASI command; request JSON on stdin, response on stdout.
	abiCommand abi = iota + 1
	// abiReactorV1: exports gojinn_v1_reserve and gojinn_v1_handle.
	abiReactorV1
)

// module is compiled code shared by every function whose module bytes hash
// the same. It is reference counted; the last release closes it.
type module struct {
	hash     [32]byte
	rt       wazero.Runtime // the runtime that compiled it
	stop     string         // export name of the stop global; "" when the module was not instrumented (rt checks loops itself)
	compiled wazero.CompiledModule
	abi      abi
	init     bool                   // exports _initialize
	idle     bool                   // a reactor exporting gojinn_v1_idle
	globals  []wasmbin.GlobalExport // mutable globals, exported by the rewrite
	minMem   uint64                 // initial memory size in bytes
	tables   uint64                 // bytes of tables and passive element segments per instance (wasmbin.TableBytes)
	kv       bool                   // imports gojinn_kv_v1: invocations carry a kvCall
	log      bool                   // imports gojinn_log_v1: invocations carry a logCall
	refs     int                    // guarded by moduleCache.mu

	// resetOnce computes resetErr, resettable's verdict, for the first
	// function that asks: the module's bytes decide it.
	resetOnce sync.Once
	resetErr  error
}

// moduleCache dedupes compilation by module hash.
type moduleCache struct {
	// fast compiles instrumented modules without wazero's termination
	// checks; safe compiles with them (WithCloseOnContextDone), for modules
	// the instrumenter cannot handle. See runtime/internal/wasmbin.
	fast, safe wazero.Runtime
	compiling  chan struct{} // semaphore bounding concurrent compiles
	prep       prepCache
	log        *slog.Logger
	// closed ends when Engine.Close begins (calls.ctx): compiles stop at
	// their next step (stopped).
	closed context.Context

	mu   sync.Mutex
	mods map[[32]byte]*module
	// loading holds, per hash, a channel closed when the load under way
	// (acquire's leader) ends; other acquirers of that hash wait for it.
	loading map[[32]byte]chan struct{}
	// compiles counts wazero CompileModule calls (from its file cache or
	// by its compiler), for tests.
	compiles atomic.Int64
}

func newModuleCache(fast, safe wazero.Runtime, concurrent int, prep prepCache, log *slog.Logger, closed context.Context) *moduleCache {
	return &moduleCache{fast: fast, safe: safe, compiling: make(chan struct{}, concurrent), prep: prep, log: log, closed: closed,
		mods: map[[32]byte]*module{}, loading: map[[32]byte]chan struct{}{}}
}

// stopped returns ErrEngineClosed once Engine.Close has begun. A compile
// checks it between its steps (waiting for its turn, preparing, compiling)
// and stops there: wazero's compiler cannot be interrupted, so Close waits
// for the step under way (its callers count themselves in calls), and the
// rest is not done for an engine that is going away.
func (c *moduleCache) stopped() error {
	if c.closed.Err() != nil {
		return errClosed("while compiling the module")
	}
	return nil
}

// acquire returns the compiled module for bin (whose sha256 is hash),
// compiling it when no function holds it, and where it came from
// (SourceMemory, SourceDisk or SourceCompiled). Concurrent callers for one
// hash load it once: the others wait for that load and take its module.
// Two wazero CompileModule calls of one module on one runtime must not
// overlap: loading from its file cache, wazero v1.12 publishes the
// compiled module in memory before it has compiled the module's entry
// preambles, and a concurrent CompileModule that finds it there
// instantiates it and calls into preambles still being written (the race
// detector caught it in TestAPIConcurrentDeploysOneRouteWinner once disk
// loads stopped taking a compile slot).
func (c *moduleCache) acquire(ctx context.Context, hash [32]byte, bin []byte) (*module, string, error) {
	for {
		c.mu.Lock()
		if m := c.mods[hash]; m != nil {
			m.refs++
			c.mu.Unlock()
			return m, SourceMemory, nil
		}
		wait, busy := c.loading[hash]
		if !busy {
			done := make(chan struct{})
			c.loading[hash] = done
			c.mu.Unlock()
			m, source, err := c.load(ctx, hash, bin)
			c.mu.Lock()
			delete(c.loading, hash)
			c.mu.Unlock()
			close(done)
			return m, source, err
		}
		c.mu.Unlock()
		select {
		case <-wait: // loaded (look again), or failed (load it here)
		case <-ctx.Done():
			return nil, SourceCompiled, fmt.Errorf("waiting for another load of the same module: %w", context.Cause(ctx))
		case <-c.closed.Done():
			return nil, SourceCompiled, errClosed("while waiting for another load of the same module")
		}
	}
}

// load is acquire's work for the one caller that loads hash.
func (c *moduleCache) load(ctx context.Context, hash [32]byte, bin []byte) (*module, string, error) {
	// Compiled code in the disk caches loads without a compiler run, so
	// it does not wait for a compile slot: a function whose code was
	// dropped while idle (CompiledIdleTimeout) comes back at once, even
	// while a long compile of another module holds every slot.
	if p := c.diskCompiled(hash); p != nil {
		if err := c.stopped(); err != nil {
			return nil, SourceDisk, err
		}
		if m, err := c.compilePreparedOnce(ctx, hash, p, false); err == nil {
			return c.keep(ctx, m, SourceDisk)
		}
		// A damaged file: compile in a slot, as below, which replaces it.
	}
	select {
	case c.compiling <- struct{}{}:
	case <-ctx.Done():
		return nil, SourceCompiled, fmt.Errorf("waiting to compile (a compile slot is busy with another module; config key runtime.max_concurrent_compiles): %w", context.Cause(ctx))
	case <-c.closed.Done():
		return nil, SourceCompiled, errClosed("while waiting to compile the module")
	}
	m, source, err := c.compile(ctx, hash, bin)
	<-c.compiling
	if err != nil {
		return nil, source, err
	}
	return c.keep(ctx, m, source)
}

// diskCompiled returns the prepared module for hash when both it and
// wazero's compiled code for it are in the disk caches, else nil.
func (c *moduleCache) diskCompiled(hash [32]byte) *prepared {
	if c.prep.dir == "" {
		return nil
	}
	p := c.prep.load(hash)
	if p == nil {
		return nil
	}
	key := wazeroCacheKey(p.bin, p.safe)
	if _, err := os.Stat(filepath.Join(wazeroCacheDir(c.prep.dir), hex.EncodeToString(key[:]))); err != nil {
		return nil
	}
	return p
}

// keep records m, just loaded from source, as the module of its hash
// with one reference, unless a concurrent load got there first: then it
// returns that one with a reference more.
func (c *moduleCache) keep(ctx context.Context, m *module, source string) (*module, string, error) {
	hash := m.hash
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.mods[hash]; prev != nil { // lost a race: use the winner's
		prev.refs++
		_ = m.compiled.Close(ctx)
		return prev, SourceMemory, nil
	}
	m.refs = 1
	c.mods[hash] = m
	return m, source, nil
}

// release drops one reference, closing the compiled code with the last.
func (c *moduleCache) release(ctx context.Context, m *module) {
	c.mu.Lock()
	m.refs--
	last := m.refs == 0
	if last {
		delete(c.mods, m.hash)
	}
	c.mu.Unlock()
	if last {
		_ = m.compiled.Close(ctx)
	}
}

func (c *moduleCache) compile(ctx context.Context, hash [32]byte, bin []byte) (*module, string, error) {
	if err := c.stopped(); err != nil {
		return nil, SourceCompiled, err
	}
	if p := c.prep.load(hash); p != nil {
		m, err := c.compilePrepared(ctx, hash, p)
		if err == nil {
			return m, SourceDisk, nil
		}
		if errors.Is(err, ErrEngineClosed) {
			return nil, SourceDisk, err // not the file's fault
		}
		// The node prepared these bytes itself, so this should not happen;
		// prepare the upload again rather than trust the file.
		c.prep.remove(hash)
	}
	p, err := prepare(bin)
	if err != nil {
		return nil, SourceCompiled, err
	}
	m, err := c.compilePrepared(ctx, hash, p)
	if err != nil {
		return nil, SourceCompiled, err
	}
	if err := c.prep.store(hash, p); err != nil {
		c.log.Warn("cannot cache the prepared module; a restart will prepare it again", "err", err)
	}
	return m, SourceCompiled, nil
}

// compilePrepared compiles a prepared module with the runtime it needs.
func (c *moduleCache) compilePrepared(ctx context.Context, hash [32]byte, p *prepared) (*module, error) {
	return c.compilePreparedOnce(ctx, hash, p, true)
}

// compilePreparedOnce is compilePrepared; with retry false it does not
// remove a compilation cache file wazero cannot use and compile again.
func (c *moduleCache) compilePreparedOnce(ctx context.Context, hash [32]byte, p *prepared, retry bool) (*module, error) {
	if err := c.stopped(); err != nil {
		return nil, err
	}
	// Before compiling: tables are counted against every function's
	// memory limit (memoryFits), and a file that lost its table maxima
	// must not be run.
	tables, err := wasmbin.TableBytes(p.bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	// A module on the fast runtime must carry the stop global (the
	// sandbox refuses one without it); on the safe runtime it may.
	rt, stop := c.fast, wasmbin.StopGlobalName
	if p.safe {
		rt = c.safe
		if !p.stop {
			stop = ""
		}
	}
	c.compiles.Add(1)
	cm, err := rt.CompileModule(ctx, p.bin)
	if err != nil && retry && c.dropCompiledCode(p, err) {
		cm, err = rt.CompileModule(ctx, p.bin)
	}
	var pathErr *fs.PathError
	if err != nil && errors.As(err, &pathErr) {
		// wazero keeps the code it compiled in memory before it writes
		// its cache file, and fails CompileModule when that write fails
		// (a full disk): the module is fine, and a second call finds the
		// code in memory. That first reference is never released (the
		// failed call returned no module to close): a leak of one
		// module's code per such failure.
		c.log.Warn("writing wazero's compilation cache failed; using the compiled code from memory (free space in the data directory)", "err", err)
		cm, err = rt.CompileModule(ctx, p.bin)
		if err != nil && errors.As(err, &pathErr) {
			return nil, fmt.Errorf("%w: %w (free space in the data directory; the node retries)", ErrCompileStorage, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: wazero cannot compile it: %v", ErrInvalidModule, err)
	}
	m := &module{hash: hash, rt: rt, stop: stop, compiled: cm, globals: p.globals, tables: tables}
	if err := m.inspect(); err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	return m, nil
}

// dropCompiledCode removes wazero's cache file of p's machine code after
// CompileModule failed with err, and reports whether there was one. wazero
// reads that file before it compiles, and a damaged one (a checksum
// mismatch, a torn write) fails the compilation instead of being
// replaced, so every later load of the module would fail the same way.
// A module wazero rejects never got as far as a cache file (validation
// comes first), so a file that exists is what failed; without it the
// next compilation compiles afresh and rewrites it.
func (c *moduleCache) dropCompiledCode(p *prepared, err error) bool {
	if c.prep.dir == "" {
		return false
	}
	key := wazeroCacheKey(p.bin, p.safe)
	path := filepath.Join(wazeroCacheDir(c.prep.dir), hex.EncodeToString(key[:]))
	rerr := os.Remove(path)
	if errors.Is(rerr, fs.ErrNotExist) {
		return false
	}
	if rerr != nil {
		c.log.Warn("compiling a module failed with its compilation cache file present, which cannot be removed; remove it by hand", "file", path, "err", err, "remove_err", rerr)
		return false
	}
	c.log.Warn("removed a compilation cache file wazero could not use; compiling the module again", "file", path, "err", err)
	return true
}

// inspect works out the module's ABI from its exports and imports.
func (m *module) inspect() error {
	fns := m.compiled.ExportedFunctions()
	_, hasStart := fns[exportStart]
	_, m.init = fns[exportInitialize]
	reserve, hasReserve := fns[exportReserve]
	handle, hasHandle := fns[exportHandle]
	switch {
	case hasStart:
		// A Go command built with the SDK exports the pooled ABI too, but
		// it is usable only after _start, which exits: run it as a command.
		m.abi = abiCommand
	case hasReserve && hasHandle:
		if !sig(reserve, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}) ||
			!sig(handle, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}) {
			return fmt.Errorf("%w: %s must be (i32) -> i32 and %s must be (i32) -> i64", ErrInvalidModule, exportReserve, exportHandle)
		}
		m.abi = abiReactorV1
		if idle, ok := fns[exportIdle]; ok {
			if !sig(idle, nil, nil) {
				return fmt.Errorf("%w: %s must take and return nothing", ErrInvalidModule, exportIdle)
			}
			m.idle = true
		}
	case hasReserve || hasHandle:
		return fmt.Errorf("%w: the pooled ABI needs both %s and %s exported", ErrInvalidModule, exportReserve, exportHandle)
	default:
		return fmt.Errorf("%w: module exports neither _start (a WASI command) nor %s (the pooled ABI); build Go guests with the Gojinn SDK", ErrInvalidModule, exportHandle)
	}
	mem, ok := m.compiled.ExportedMemories()[exportMemory]
	if !ok {
		if m.abi == abiReactorV1 {
			return fmt.Errorf("%w: the pooled ABI needs the linear memory exported as %q", ErrInvalidModule, exportMemory)
		}
	} else {
		m.minMem = uint64(mem.Min()) * 65536
	}
	for _, im := range m.compiled.ImportedMemories() {
		mod, name, _ := im.Import()
		return fmt.Errorf("%w: module imports memory %s.%s; Gojinn guests must define their own", ErrInvalidModule, mod, name)
	}
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
			if err := wasiImportOK(m.rt, name, f); err != nil {
				return err
			}
		case kvModule:
			if err := kvImportOK(name, f); err != nil {
				return err
			}
			m.kv = true
		case logModule:
			if err := logImportOK(name, f); err != nil {
				return err
			}
			m.log = true
		default:
			return fmt.Errorf("%w: module imports %s.%s, which this node does not provide (host modules: wasi_snapshot_preview1, %s, %s)", ErrInvalidModule, mod, name, kvModule, logModule)
		}
	}
	return nil
}

// wasiImportOK returns nil when a module may import name from
// wasi_snapshot_preview1 with def's signature, else an ErrInvalidModule
// error saying why. wazero checks imports only when it instantiates a
// module, which for a WASI command is at its first request: without this
// check a command importing a function WASI does not have, or with
// another signature, would deploy and then fail every request.
func wasiImportOK(rt wazero.Runtime, name string, def api.FunctionDefinition) error {
	var want api.FunctionDefinition
	if host := rt.Module(wasi_snapshot_preview1.ModuleName); host != nil {
		want = host.ExportedFunctionDefinitions()[name]
	}
	if want == nil {
		return fmt.Errorf("%w: module imports %s.%s, which is not a WASI preview 1 function (build the guest for wasip1: GOOS=wasip1 GOARCH=wasm, or a wasm32-wasip1 target, without extensions of other runtimes; see docs/guest-protocol.md)",
			ErrInvalidModule, wasi_snapshot_preview1.ModuleName, name)
	}
	if !sig(def, want.ParamTypes(), want.ResultTypes()) {
		return fmt.Errorf("%w: %s.%s has the wrong signature %v -> %v (WASI preview 1 has %v -> %v)",
			ErrInvalidModule, wasi_snapshot_preview1.ModuleName, name, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()),
			typeNames(want.ParamTypes()), typeNames(want.ResultTypes()))
	}
	return nil
}

// memoryFits reports whether an instance of m fits in a memory limit of
// limit bytes. The limit covers the instance's linear memory and its
// tables: wazero keeps tables (8 bytes an entry) and passive element
// segments outside linear memory, allocated for every instance and, for
// table.grow, at once, so a guest could otherwise allocate far more than
// its limit (wasmbin/DESIGN.md, "The table budget"). Every table has a
// maximum (wasmbin.CapTables), and their bytes at their maxima are taken
// off the top: the linear memory may grow to the rest (linearLimit).
func (m *module) memoryFits(limit uint64) error {
	switch {
	case m.tables > limit:
		return fmt.Errorf("%w: the module's tables take %d bytes of every instance (8 bytes per entry of each table's maximum size, and of each passive element segment), more than the function's memory limit of %d bytes; raise the limit to at least %d bytes (tables and initial memory), or give the tables smaller maxima",
			ErrInvalidSpec, m.tables, limit, m.tables+m.minMem)
	case m.tables > 0 && m.minMem+m.tables > limit:
		return fmt.Errorf("%w: module needs %d bytes of initial memory and %d bytes of tables (8 bytes per entry of each table's maximum size, and of each passive element segment), %d in all, more than the function's memory limit of %d bytes; raise the limit",
			ErrInvalidSpec, m.minMem, m.tables, m.minMem+m.tables, limit)
	case m.minMem > limit:
		return fmt.Errorf("%w: module needs %d bytes of initial memory, more than the function's memory limit of %d bytes; raise the limit",
			ErrInvalidSpec, m.minMem, limit)
	}
	return nil
}

// resettable reports whether instances of m may be reset between
// requests (bin is the module as uploaded, whose sha256 is m.hash). A
// reset restores linear memory and mutable globals; wazero cannot reset
// tables or bring back a dropped segment, so a module whose code may
// change either after initialisation (wasmbin.FindStateWrite) would let
// a request see what an earlier one left, or trap on a segment an
// earlier one dropped. Such a module is refused for reset, with the
// instruction, where it is and what to do.
func (m *module) resettable(bin []byte) error {
	m.resetOnce.Do(func() {
		const todo = "deploy it in pooled mode without reset (reset \"none\"), or isolated"
		w, err := wasmbin.FindStateWrite(bin)
		switch {
		case err != nil:
			m.resetErr = fmt.Errorf("%w: reset needs every function checked for instructions that change tables or segments, which a reset does not restore, and this module's code cannot be checked (%v); %s",
				ErrInvalidModule, err, todo)
		case w != nil:
			fn := fmt.Sprintf("function %d", w.Func)
			if w.Export != "" {
				fn += fmt.Sprintf(" (exported as %q)", w.Export)
			}
			how, where := "uses", fmt.Sprintf("at byte offset %d", w.Offset)
			if w.Undecoded {
				how, where = "may use", where+" (the body does not decode exactly, so every byte that could start one counts)"
			}
			m.resetErr = fmt.Errorf("%w: %s %s %s %s, which %s; a reset restores only linear memory and globals, so the next request served by the same instance would see what an earlier one did: %s (with reset, only the start function and _initialize, when nothing else calls or references them, may change tables or segments)",
				ErrInvalidModule, fn, how, w.Instr, where, w.Effect(), todo)
		}
	})
	return m.resetErr
}

// linearLimit is what a memory limit of limit bytes leaves for the linear
// memory of an instance of m once its tables are counted (memoryFits).
func (m *module) linearLimit(limit uint64) uint64 { return limit - min(limit, m.tables) }

func sig(f api.FunctionDefinition, params, results []api.ValueType) bool {
	return string(f.ParamTypes()) == string(params) && string(f.ResultTypes()) == string(results)
}
