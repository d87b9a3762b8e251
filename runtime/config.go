package runtime

import (
	"fmt"
	"log/slog"
	"math"
	goruntime "runtime"
	"sort"
	"strings"
	"time"
)

// Config configures an Engine. Start from DefaultConfig.
type Config struct {
	// CacheDir holds wazero's compilation cache and the node's prepared
	// (limit-checked and rewritten) modules, so a restart neither
	// recompiles nor rewrites them. Empty disables both disk caches.
	// Default: empty; nodes set it to DATA_DIR/compilecache.
	CacheDir string
	// CompiledIdleTimeout is how long a function's compiled code stays in
	// memory without invocations and without live instances. It is
	// recompiled (from the disk cache) on the next invocation. Default 10m.
	CompiledIdleTimeout time.Duration
	// PoolIdleTimeout is how long a pool keeps idle instances after its
	// last invocation before closing them all. Default 60s.
	PoolIdleTimeout time.Duration
	// JanitorInterval is how often idle pools and compiled modules are
	// checked. Default 5s.
	JanitorInterval time.Duration
	// Logger receives engine events. Default slog.Default().
	Logger *slog.Logger
	// MaxModuleBytes caps the size of a module Load accepts. Compiling
	// costs memory and time in proportion to the module (about 400 bytes
	// of compiler memory per byte of plain code), so uploads need a bound.
	// Default 64 MiB.
	MaxModuleBytes int
	// MaxConcurrentCompiles bounds how many modules compile at once, so a
	// burst of deploys cannot multiply the compiler's peak memory.
	// Default 1.
	MaxConcurrentCompiles int
	// KV is the key-value store guests use through the gojinn_kv_v1 host
	// functions (nodes set it to the cluster's replicated KV). Default
	// nil: modules importing those functions still load, and every call
	// answers "KV is not available on this node".
	KV KV
	// Metrics, when set, receives the engine's internal series (pool
	// waits, instantiations, compilations, evictions, resets). One Metrics
	// serves one Engine. Default nil: nothing is recorded.
	Metrics *Metrics
	// Logs receives guest log records (gojinn_log_v1 lines and the lines
	// of stdout and stderr). Default nil: each record goes to Logger at
	// its level, with the record's attributes (LogRecord.Attrs).
	Logs LogSink
	// LogRate is how many log lines per second each loaded function may
	// emit on average (a token bucket per function; lines over it are
	// dropped and counted in Stats.LogsDropped). Zero means
	// DefaultLogRate (100); a negative rate means no limit.
	LogRate float64
	// LogBurst is how many lines a function may emit at once before
	// LogRate applies. Zero means DefaultLogBurst (1000); it must not be
	// negative.
	LogBurst int
	// MaxGuestMemory bounds the linear memory of all instances of all
	// functions together, in bytes: a grow (or a new instance) past it
	// fails, and the call with ErrNodeMemory (503). Zero means half the
	// memory available to the process (the machine's, or its cgroup's
	// memory.max when lower; no bound when neither can be read); negative
	// means no bound.
	MaxGuestMemory int64
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		CompiledIdleTimeout:   10 * time.Minute,
		PoolIdleTimeout:       60 * time.Second,
		JanitorInterval:       5 * time.Second,
		MaxModuleBytes:        64 << 20,
		MaxConcurrentCompiles: 1,
	}
}

// Validate returns the first problem with c, or nil.
func (c Config) Validate() error {
	switch {
	case c.CompiledIdleTimeout <= 0:
		return fmt.Errorf("%w: CompiledIdleTimeout must be positive, got %v", ErrInvalidSpec, c.CompiledIdleTimeout)
	case c.PoolIdleTimeout <= 0:
		return fmt.Errorf("%w: PoolIdleTimeout must be positive, got %v", ErrInvalidSpec, c.PoolIdleTimeout)
	case c.JanitorInterval <= 0:
		return fmt.Errorf("%w: JanitorInterval must be positive, got %v", ErrInvalidSpec, c.JanitorInterval)
	case c.MaxModuleBytes <= 0:
		return fmt.Errorf("%w: MaxModuleBytes must be positive, got %d", ErrInvalidSpec, c.MaxModuleBytes)
	case c.MaxConcurrentCompiles <= 0:
		return fmt.Errorf("%w: MaxConcurrentCompiles must be positive, got %d", ErrInvalidSpec, c.MaxConcurrentCompiles)
	case math.IsNaN(c.LogRate) || math.IsInf(c.LogRate, 0):
		return fmt.Errorf("%w: LogRate must be a number of lines per second (negative: no limit), got %v", ErrInvalidSpec, c.LogRate)
	case c.LogBurst < 0:
		return fmt.Errorf("%w: LogBurst must not be negative, got %d (for no limit set a negative LogRate)", ErrInvalidSpec, c.LogBurst)
	}
	return nil
}

// Mode is how a function's requests are executed.
type Mode string

// Execution modes.
const (
	// ModeIsolated runs every request in a fresh sandbox. Command modules
	// (exporting _start) read the request JSON on stdin and write the
	// response JSON on stdout; reactor modules are called through the
	// pooled ABI once, then discarded.
	ModeIsolated Mode = "isolated"
	// ModePooled reuses warm instances of a reactor module that exports
	// the pooled ABI (gojinn_v1_reserve, gojinn_v1_handle).
	ModePooled Mode = "pooled"
)

// Reset selects what happens to a pooled instance between requests.
type Reset string

// Reset strategies.
const (
	// ResetNone keeps the instance's state across requests (fastest;
	// globals and heap persist, like a long-running server).
	ResetNone Reset = "none"
	// ResetAuto picks ResetCoW where the system supports it, else
	// ResetCopy.
	ResetAuto Reset = "auto"
	// ResetCopy copies the post-initialisation memory snapshot back after
	// every request: cost proportional to the memory size.
	ResetCopy Reset = "copy"
	// ResetCoW maps memory copy-on-write over a memfd snapshot and drops
	// the dirtied pages with madvise: cost proportional to pages written.
	ResetCoW Reset = "cow"
)

// Limits bound one function's invocations. Zero fields take the default
// stated on each field.
type Limits struct {
	// MemoryBytes caps an instance's linear memory and its tables
	// together: the tables, counted at their maximum sizes (8 bytes an
	// entry, and 8 per entry of a passive element segment), are taken off
	// the top, and a module they leave no room for is refused at load.
	// Default 128 MiB.
	MemoryBytes uint64
	// Timeout is the wall-clock limit of one invocation, including
	// instantiation in isolated mode. Default 10s.
	Timeout time.Duration
	// CPUTime is the CPU-time budget of one invocation, measured on the
	// thread that runs the guest. Zero means the same as Timeout, which
	// then bounds CPU time too (CPU time never exceeds wall time). It
	// covers an isolated instance's start, made for the one request, but
	// not a pooled instance's, which Timeout alone bounds.
	CPUTime time.Duration
	// MaxRequestBody caps the request body. Default 10 MiB.
	MaxRequestBody int64
	// MaxResponseBody caps the response body. Default 10 MiB.
	MaxResponseBody int64
	// MaxStdout caps what a guest may write to stdout per invocation
	// (pooled mode; in isolated command mode stdout is the response and
	// MaxResponseBody applies). Default 64 KiB; the rest is dropped.
	MaxStdout int64
	// MaxStderr caps what a guest may write to stderr per invocation.
	// Default 64 KiB; the rest is dropped.
	MaxStderr int64
	// MaxInstances caps concurrent invocations of a function: pooled
	// instances, or isolated invocations (each with its own instance).
	// Default 2 x GOMAXPROCS, at least 4.
	MaxInstances int
	// QueueTimeout is how long a request waits for a pooled instance, or
	// for an isolated invocation to end, before failing with ErrBusy.
	// Default 1s.
	QueueTimeout time.Duration
}

const (
	maxMemoryBytes = 4 << 30 // wasm32 address space
	mib            = 1 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = 128 * mib
	}
	if l.Timeout == 0 {
		l.Timeout = 10 * time.Second
	}
	if l.MaxRequestBody == 0 {
		l.MaxRequestBody = 10 * mib
	}
	if l.MaxResponseBody == 0 {
		l.MaxResponseBody = 10 * mib
	}
	if l.MaxStdout == 0 {
		l.MaxStdout = 64 << 10
	}
	if l.MaxStderr == 0 {
		l.MaxStderr = 64 << 10
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = max(4, 2*goruntime.GOMAXPROCS(0))
	}
	if l.QueueTimeout == 0 {
		l.QueueTimeout = time.Second
	}
	return l
}

func (l Limits) validate() error {
	switch {
	case l.MemoryBytes < 64<<10 || l.MemoryBytes > maxMemoryBytes:
		return fmt.Errorf("memory limit %d bytes is outside 64 KiB .. 4 GiB", l.MemoryBytes)
	case l.Timeout < 0, l.CPUTime < 0, l.QueueTimeout < 0:
		return fmt.Errorf("timeouts must not be negative")
	case l.MaxRequestBody < 0, l.MaxResponseBody < 0, l.MaxStdout < 0, l.MaxStderr < 0:
		return fmt.Errorf("size caps must not be negative")
	case l.MaxInstances < 0:
		return fmt.Errorf("MaxInstances must not be negative")
	}
	return nil
}

// FunctionSpec describes one version of a function to load.
type FunctionSpec struct {
	// Name identifies the function; loading a spec with the name of a
	// loaded function replaces it.
	Name string
	// Version is reported to the guest and in errors.
	Version string
	// Module is the WebAssembly binary.
	Module []byte
	// Mode is ModeIsolated (default) or ModePooled.
	Mode Mode
	// Reset applies to ModePooled. Default ResetNone. An instance whose
	// request grew its linear memory is retired instead of reset (the
	// memory cannot shrink, and the restored guest would not know the
	// grown pages). A module whose code may change a table or drop a
	// segment after initialisation is refused with reset
	// (ErrInvalidModule): a reset restores only linear memory and globals.
	Reset Reset
	// Env is the guest's environment. Nothing of the host's leaks in. A
	// Go guest also gets GOMEMLIMIT, derived from Limits.MemoryBytes,
	// unless Env sets it.
	Env map[string]string
	// Limits bound each invocation.
	Limits Limits
}

func (s *FunctionSpec) normalize() error {
	if s.Name == "" {
		return fmt.Errorf("%w: function name is empty", ErrInvalidSpec)
	}
	if s.Mode == "" {
		s.Mode = ModeIsolated
	}
	if s.Reset == "" {
		s.Reset = ResetNone
	}
	switch s.Mode {
	case ModeIsolated, ModePooled:
	default:
		return fmt.Errorf("%w: function %s: mode %q is not %q or %q", ErrInvalidSpec, s.Name, s.Mode, ModeIsolated, ModePooled)
	}
	switch s.Reset {
	case ResetNone, ResetAuto, ResetCopy, ResetCoW:
	default:
		return fmt.Errorf("%w: function %s: reset %q is not one of none, auto, copy, cow", ErrInvalidSpec, s.Name, s.Reset)
	}
	if s.Mode == ModeIsolated && s.Reset != ResetNone {
		return fmt.Errorf("%w: function %s: reset %q needs mode %q (isolated instances are never reused)", ErrInvalidSpec, s.Name, s.Reset, ModePooled)
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("%w: function %s: env name %q must be non-empty without '=' or NUL", ErrInvalidSpec, s.Name, k)
		}
	}
	for k, v := range s.Env {
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: function %s: env %s contains NUL", ErrInvalidSpec, s.Name, k)
		}
	}
	s.Limits = s.Limits.withDefaults()
	if err := s.Limits.validate(); err != nil {
		return fmt.Errorf("%w: function %s: %v", ErrInvalidSpec, s.Name, err)
	}
	return nil
}

func sortedEnv(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
