package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

func TestConfigValidate(t *testing.T) {
	if err := runtime.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mod := range map[string]func(*runtime.Config){
		"CompiledIdleTimeout":   func(c *runtime.Config) { c.CompiledIdleTimeout = 0 },
		"PoolIdleTimeout":       func(c *runtime.Config) { c.PoolIdleTimeout = -time.Second },
		"JanitorInterval":       func(c *runtime.Config) { c.JanitorInterval = 0 },
		"MaxModuleBytes":        func(c *runtime.Config) { c.MaxModuleBytes = 0 },
		"MaxConcurrentCompiles": func(c *runtime.Config) { c.MaxConcurrentCompiles = -1 },
	} {
		c := runtime.DefaultConfig()
		mod(&c)
		err := c.Validate()
		if !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming the field", name, err)
		}
	}
}

func TestLoadRejectsBadSpecs(t *testing.T) {
	e := newEngine(t)
	tiny := wat(t, "tiny-reactor")
	cases := []struct {
		name string
		spec runtime.FunctionSpec
		want error
		msg  string
	}{
		{"no name", runtime.FunctionSpec{Module: tiny}, runtime.ErrInvalidSpec, "name is empty"},
		{"bad mode", runtime.FunctionSpec{Name: "f", Module: tiny, Mode: "turbo"}, runtime.ErrInvalidSpec, `mode "turbo"`},
		{"bad reset", runtime.FunctionSpec{Name: "f", Module: tiny, Mode: runtime.ModePooled, Reset: "sometimes"}, runtime.ErrInvalidSpec, "reset"},
		{"reset isolated", runtime.FunctionSpec{Name: "f", Module: tiny, Reset: runtime.ResetCopy}, runtime.ErrInvalidSpec, "needs mode"},
		{"env name", runtime.FunctionSpec{Name: "f", Module: tiny, Env: map[string]string{"A=B": "x"}}, runtime.ErrInvalidSpec, "env name"},
		{"tiny memory", runtime.FunctionSpec{Name: "f", Module: tiny, Limits: runtime.Limits{MemoryBytes: 10}}, runtime.ErrInvalidSpec, "memory limit"},
		{"negative timeout", runtime.FunctionSpec{Name: "f", Module: tiny, Limits: runtime.Limits{Timeout: -1}}, runtime.ErrInvalidSpec, "negative"},
		{"not wasm", runtime.FunctionSpec{Name: "f", Module: []byte("#!/bin/sh\necho hi\n")}, runtime.ErrInvalidModule, "magic"},
		{"empty", runtime.FunctionSpec{Name: "f"}, runtime.ErrInvalidModule, ""},
		{"truncated", runtime.FunctionSpec{Name: "f", Module: tiny[:len(tiny)/2]}, runtime.ErrInvalidModule, ""},
		{"command pooled", runtime.FunctionSpec{Name: "f", Module: wat(t, "cmd-loop"), Mode: runtime.ModePooled}, runtime.ErrInvalidModule, "-buildmode=c-shared"},
		{"memory over limit", runtime.FunctionSpec{Name: "f", Module: wat(t, "bigmem"), Limits: runtime.Limits{MemoryBytes: 16 << 20}}, runtime.ErrInvalidSpec, "raise the limit"},
	}
	for _, c := range cases {
		_, err := e.Load(context.Background(), c.spec)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want %v mentioning %q", c.name, err, c.want, c.msg)
		}
	}
	// The module that was too big for 16 MiB loads under a larger limit.
	load(t, e, runtime.FunctionSpec{Name: "bigmem", Module: wat(t, "bigmem"), Limits: runtime.Limits{MemoryBytes: 64 << 20}})
}

// A bad deploy leaves the running version in place.
func TestBadModuleKeepsPreviousVersion(t *testing.T) {
	e := newEngine(t)
	load(t, e, runtime.FunctionSpec{Name: "f", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	if _, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "f", Module: []byte("\x00asm garbage")}); err == nil {
		t.Fatal("garbage loaded")
	}
	res, err := e.Invoke(context.Background(), "f", get("/"))
	if err != nil || string(res.Response.Body) != "hello, wasm!\n" {
		t.Fatalf("previous version no longer serves: %v %v", res, err)
	}
}

func TestUnknownFunction(t *testing.T) {
	e := newEngine(t)
	_, err := e.Invoke(context.Background(), "nope", get("/"))
	if !errors.Is(err, runtime.ErrUnknownFunction) || runtime.HTTPStatus(err) != 404 {
		t.Fatalf("got %v", err)
	}
	if err := e.Unload(context.Background(), "nope"); !errors.Is(err, runtime.ErrUnknownFunction) {
		t.Fatalf("unload: %v", err)
	}
}

func TestUnload(t *testing.T) {
	e := newEngine(t)
	load(t, e, runtime.FunctionSpec{Name: "f", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	if err := e.Unload(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Invoke(context.Background(), "f", get("/")); !errors.Is(err, runtime.ErrUnknownFunction) {
		t.Fatalf("after unload: %v", err)
	}
}

func TestRequestAndOutputCaps(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: abuseReactor(t), Mode: runtime.ModePooled,
		Limits: runtime.Limits{MaxRequestBody: 1000, MaxStdout: 100, MaxStderr: 50}})
	_, err := invoke(t, f, request("POST", "/body", make([]byte, 1001)))
	if !errors.Is(err, runtime.ErrRequestTooLarge) || runtime.HTTPStatus(err) != 413 {
		t.Fatalf("oversized body: %v", err)
	}
	res, err := invoke(t, f, get("/stdout?n=100000"))
	if err != nil {
		t.Fatal(err)
	}
	if kept, rest, _ := strings.Cut(string(res.Stdout), "\n"); kept != strings.Repeat("o", 100) || !strings.Contains(rest, "truncated") {
		t.Fatalf("stdout not capped at 100 bytes: %d bytes", len(res.Stdout))
	}
	res, err = invoke(t, f, get("/stderr?n=100000"))
	if err != nil {
		t.Fatal(err)
	}
	if kept, _, _ := strings.Cut(string(res.Stderr), "\n"); kept != strings.Repeat("e", 50) {
		t.Fatalf("stderr not capped at 50 bytes: %q", res.Stderr)
	}
	// The next invocation starts with empty buffers.
	res, _ = invoke(t, f, get("/ok"))
	if res.Stdout != nil || res.Stderr != nil {
		t.Fatalf("output leaked into the next invocation: %q %q", res.Stdout, res.Stderr)
	}
}

// Guests get their env vars and nothing of the host's, real randomness
// and clocks, and no file system or network.
func TestGuestEnvironment(t *testing.T) {
	t.Setenv("GOJINN_HOST_SECRET", "must-not-leak")
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset,
				Env: map[string]string{"GREETING": "hi there", "EMPTY": ""}})
			// Three variables: the two given and GOMEMLIMIT, which a Go
			// guest gets from its memory limit (TestGoGuestGetsMemoryLimit).
			if _, body := mustInvoke(t, f, get("/env?k=GREETING")); body != "hi there|3" {
				t.Errorf("env: %q, want the value and exactly 3 variables", body)
			}
			if _, body := mustInvoke(t, f, get("/env?k=GOJINN_HOST_SECRET")); body != "|3" {
				t.Errorf("host env leaked: %q", body)
			}
			_, r1 := mustInvoke(t, f, get("/rand"))
			_, r2 := mustInvoke(t, f, get("/rand"))
			if len(r1) != 32 || r1 == r2 {
				t.Errorf("randomness: %q then %q", r1, r2)
			}
			// argv[0] is the function's name: flag.Parse and os.Args[0]
			// work as in a program (with none, flag.Parse panicked).
			if _, body := mustInvoke(t, f, get("/args")); body != mc.name+"|0" {
				t.Errorf("args: %q, want the function's name and no arguments", body)
			}
			_, ts := mustInvoke(t, f, get("/time"))
			if d := time.Since(time.Unix(0, atoi(t, ts))); d < -time.Minute || d > time.Minute {
				t.Errorf("guest clock is off by %v", d)
			}
			if _, body := mustInvoke(t, f, get("/fs")); body != "true" {
				t.Errorf("guest could read /etc/passwd")
			}
			if _, body := mustInvoke(t, f, get("/net")); body != "true" {
				t.Errorf("guest could dial the network")
			}
		})
	}
}

func atoi(t testing.TB, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// The disk cache survives the engine: a second engine over the same
// directory loads the module from it.
func TestDiskCompilationCache(t *testing.T) {
	dir := t.TempDir()
	mod := wat(t, "tiny-reactor")
	for i := 0; i < 2; i++ {
		e := newEngine(t, func(c *runtime.Config) { c.CacheDir = dir })
		f := load(t, e, runtime.FunctionSpec{Module: mod, Mode: runtime.ModePooled})
		if _, body := mustInvoke(t, f, get("/")); body != "hello, wasm!\n" {
			t.Fatalf("engine %d: %q", i, body)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		var files int
		_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
			if fi != nil && !fi.IsDir() {
				files++
			}
			return nil
		})
		if files == 0 {
			t.Fatalf("engine %d left nothing in the cache directory", i)
		}
	}
}

// Creating and closing engines with pooled instances returns goroutines
// and memory.
func TestEngineLeak(t *testing.T) {
	mod := wat(t, "tiny-reactor")
	run := func() {
		e := newEngine(t)
		f := load(t, e, runtime.FunctionSpec{Module: mod, Mode: runtime.ModePooled, Reset: runtime.ResetAuto})
		for i := 0; i < 5; i++ {
			mustInvoke(t, f, get("/"))
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	run() // warm up lazily started runtime goroutines
	goruntime.GC()
	baseG := goruntime.NumGoroutine()
	var before goruntime.MemStats
	goruntime.ReadMemStats(&before)
	for i := 0; i < 30; i++ {
		run()
	}
	waitFor(t, 10*time.Second, "goroutines to return", func() bool { return goruntime.NumGoroutine() <= baseG })
	goruntime.GC()
	var after goruntime.MemStats
	goruntime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB over 30 engines", grown>>20)
	}
	if n := openFDs(t); n > 200 {
		t.Fatalf("%d open file descriptors after closing the engines", n)
	}
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd on this system: %v", err)
	}
	return len(ents)
}

// Tiny modules that declare huge vectors are refused before wazero
// decodes them (wazero would allocate the declared size and the process
// would die of a fatal, unrecoverable out-of-memory).
func TestLoadRefusesHostileCounts(t *testing.T) {
	e := newEngine(t)
	header := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	hostile := map[string][]byte{
		// data section declaring 2^32-1 segments
		"data count": append(append([]byte{}, header...), 11, 5, 0xff, 0xff, 0xff, 0xff, 0x0f),
		// type section declaring 2^32-1 types
		"type count": append(append([]byte{}, header...), 1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, mod := range hostile {
		_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "f", Module: mod})
		if !errors.Is(err, runtime.ErrInvalidModule) {
			t.Errorf("%s: got %v, want ErrInvalidModule", name, err)
		}
	}
	// The engine still works.
	load(t, e, runtime.FunctionSpec{Name: "ok", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
}

func TestLoadRefusesOversizedModules(t *testing.T) {
	e := newEngine(t, func(c *runtime.Config) { c.MaxModuleBytes = 100 })
	_, err := e.Load(context.Background(), runtime.FunctionSpec{Name: "f", Module: make([]byte, 101)})
	if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("got %v", err)
	}
}

// A guest growing a table without a maximum by 2^31-1 entries gets -1
// (tables are capped at load); uncapped, wazero would allocate 16 GiB at
// once and the process would die.
func TestTableGrowIsCapped(t *testing.T) {
	e := newEngine(t)
	f := load(t, e, runtime.FunctionSpec{Module: wat(t, "tablegrow"), Mode: runtime.ModePooled})
	if st, _ := mustInvoke(t, f, get("/")); st != 200 {
		t.Fatalf("status %d", st)
	}
}

// A guest may run goroutines within a request: a hundred that each sleep
// 10 ms finish together (their sleeps overlap in the guest's scheduler),
// not one after another, and their results are all there.
func TestGuestGoroutines(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			mod := mc.abuse(t)
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset})
			for range 2 {
				res, err := invoke(t, f, get("/fanout?n=100&ms=10"))
				if err != nil {
					t.Fatal(err)
				}
				if body := string(res.Response.Body); body != "4950" {
					t.Fatalf("sum of 0..99 from 100 goroutines: %q", body)
				}
				// One after another would take a second.
				if res.Duration > 500*time.Millisecond {
					t.Errorf("100 concurrent 10 ms sleeps took %v", res.Duration)
				}
			}
		})
	}
}

// A Go handler that prints on stdout works in every mode: in a command
// (isolated) the SDK sends it to stderr, since stdout carries the
// response there; in a reactor it is captured as stdout.
func TestGoHandlerPrintingToStdout(t *testing.T) {
	e := newEngine(t)
	for _, mc := range allModes {
		t.Run(mc.name, func(t *testing.T) {
			f := load(t, e, runtime.FunctionSpec{Name: mc.name, Module: mc.abuse(t), Mode: mc.mode, Reset: mc.reset})
			res, err := invoke(t, f, get("/stdout?n=5"))
			if err != nil {
				t.Fatalf("printing to stdout: %v", err)
			}
			if res.Response.StatusOrDefault() != 200 || string(res.Response.Body) != "wrote stdout" {
				t.Fatalf("printing to stdout: %d %q", res.Response.StatusOrDefault(), res.Response.Body)
			}
			if printed := string(res.Stdout) + string(res.Stderr); !strings.Contains(printed, "ooooo") {
				t.Fatalf("the printed text is neither in stdout %q nor stderr %q", res.Stdout, res.Stderr)
			}
		})
	}
}
