package wasmbin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// childEnv names the hostile module that a child process started by
// TestWazeroDiesOnHostileModules compiles.
const childEnv = "WASMBIN_CHILD"

// crashCases are the hostile modules run through wazero in a child process:
// 2^32-1 data segments, 2^32-1 locals in a function and 2^32-1 function
// names.
var crashCases = []string{"data segment count", "2^32-1 locals", "function name count"}

// TestWazeroDiesOnHostileModules documents the wazero v1.12 bug CheckLimits
// guards against: for each of a few modules that CheckLimits rejects, a
// child process running CompileModule dies with a fatal (unrecoverable)
// out of memory error, while a control child compiling a valid module
// under the same address space limit does not. If wazero stops
// preallocating declared counts, this test fails and DESIGN.md should be
// updated. It also documents a hazard that CheckLimits leaves to the
// engine: table.grow at run time.
func TestWazeroDiesOnHostileModules(t *testing.T) {
	if name := os.Getenv(childEnv); name != "" {
		compileInChild(name)
		return
	}
	if testing.Short() {
		t.Skip("starts child processes that run wazero until they die of a fatal out of memory error")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the child limits its address space with RLIMIT_AS, which is only set on Linux")
	}
	cases := map[string][]byte{}
	for _, tc := range hostileCases() {
		cases[tc.name] = tc.wasm
	}
	t.Run("control", func(t *testing.T) {
		// The address space limit alone does not kill a child compiling
		// a valid module.
		out, err := runChild(controlModule)
		if err != nil || !strings.Contains(string(out), "compiled: <nil>") {
			t.Fatalf("the child compiling a valid module ended with %v:\n%s", err, head(out))
		}
	})
	t.Run(tableGrow, func(t *testing.T) {
		// A hazard CheckLimits does not cover: growing a table without a
		// maximum at run time.
		if err := CheckLimits(tableGrowModule()); err != nil {
			t.Fatalf("CheckLimits rejects the module: %v", err)
		}
		out, err := runChild(tableGrow)
		if err == nil || !fatalOOM(out) || !strings.Contains(string(out), "calling grow") {
			t.Fatalf("the child ended with %v:\n%s", err, head(out))
		}
		t.Logf("child: %v, %s %s", err, firstLine(out, "fatal error"), firstLine(out, "cannot allocate"))
	})
	t.Run(manyTables, func(t *testing.T) {
		// What CheckLimits now refuses: many tables, each grown by what
		// a per-table cap used to allow (10,000 x 100,000 entries, 8 GB).
		if err := CheckLimits(manyTablesModule()); !errors.Is(err, ErrLimit) {
			t.Fatalf("CheckLimits says %v, want ErrLimit", err)
		}
		out, err := runChild(manyTables)
		if err == nil || !fatalOOM(out) || !strings.Contains(string(out), "calling grow") {
			t.Fatalf("the child ended with %v:\n%s", err, head(out))
		}
		t.Logf("child: %v, %s %s", err, firstLine(out, "fatal error"), firstLine(out, "cannot allocate"))
	})
	for _, name := range crashCases {
		t.Run(name, func(t *testing.T) {
			wasm, ok := cases[name]
			if !ok {
				t.Fatalf("no hostile case %q", name)
			}
			if err := CheckLimits(wasm); err == nil {
				t.Fatal("CheckLimits accepts the module")
			}
			out, err := runChild(name)
			switch {
			case !strings.Contains(string(out), "compiling "):
				t.Fatalf("the child did not reach CompileModule (%v):\n%s", err, tail(out))
			case strings.Contains(string(out), "compiled: "):
				t.Fatalf("wazero survived the module (%v); if it no longer preallocates declared counts, update DESIGN.md:\n%s", err, tail(out))
			case err == nil || !fatalOOM(out):
				t.Fatalf("the child ended with %v, not a fatal out of memory error:\n%s", err, head(out))
			}
			t.Logf("child: %v, %s %s", err, firstLine(out, "fatal error"), firstLine(out, "cannot allocate"))
		})
	}
}

// controlModule names the valid module a control child compiles.
const controlModule = "control"

// tableGrow names the child that instantiates tableGrowModule and calls
// its grow function.
const tableGrow = "table.grow"

// tableGrowModule has a table without a maximum and a function "grow"
// that grows it by 2^31-1 entries, which wazero allocates at once.
func tableGrowModule() []byte {
	return wasmModule(
		sec(1, vec(functype(nil, nil))),
		sec(3, vec([]byte{0})),
		sec(4, vec(cat(fref, 0x00, 0x00))),
		sec(7, vec(export("grow", 0, 0))),
		sec(10, vec(body(0xd0, fref, i32c(math.MaxInt32), 0xfc, 15, 0, 0x1a))), // table.grow 0; drop
	)
}

// manyTables names the child that instantiates manyTablesModule and calls
// its grow function.
const manyTables = "many tables grown"

// manyTablesModule has 10,000 tables with a maximum of 100,000 entries
// each (the per-table cap CapTables used to set) and a function "grow"
// that grows each of them to its maximum: 8 GB of references, allocated
// one table.grow at a time.
func manyTablesModule() []byte {
	const n = 10_000
	tables := make([][]byte, n)
	var grow []byte
	for i := range tables {
		tables[i] = cat(fref, 0x01, 0x00, uleb(100_000))
		grow = cat(grow, 0xd0, fref, i32c(100_000), 0xfc, 15, uleb(uint64(i)), 0x1a) // table.grow i; drop
	}
	return wasmModule(
		sec(1, vec(functype(nil, nil))),
		sec(3, vec([]byte{0})),
		sec(4, vec(tables...)),
		sec(7, vec(export("grow", 0, 0))),
		sec(10, vec(body(grow))),
	)
}

// runChild runs the test binary in a child process that compiles the
// module named name, and returns its output. It fails the test if the
// child runs for more than 90 s (it allocates gigabytes before it dies:
// 14 s alone under -race, over 20 s on a busy 2-CPU machine).
func runChild(name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestWazeroDiesOnHostileModules$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, fmt.Errorf("the child did not finish in 90 s: %w", ctx.Err())
	}
	return out, err
}

// compileInChild compiles the hostile module named name (or, for
// controlModule, a valid one) under an address space limit of 4 GiB more
// than the process uses, prints the result and exits, unless the Go runtime
// kills the process first.
func compileInChild(name string) {
	wasm := spinModule()
	for _, tc := range hostileCases() {
		if tc.name == name {
			wasm = tc.wasm
		}
	}
	if err := limitAddressSpace(4 << 30); err != nil {
		fmt.Println("limit address space:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	if name == tableGrow || name == manyTables {
		wasm := tableGrowModule()
		if name == manyTables {
			wasm = manyTablesModule()
		}
		mod, err := r.Instantiate(ctx, wasm)
		if err != nil {
			fmt.Println("instantiate:", err)
			os.Exit(2)
		}
		fmt.Println("calling grow")
		_, err = mod.ExportedFunction("grow").Call(ctx)
		fmt.Printf("grow returned: %v\n", err)
		os.Exit(0)
	}
	fmt.Printf("compiling %q (%d bytes)\n", name, len(wasm))
	_, err := r.CompileModule(ctx, wasm)
	fmt.Printf("compiled: %v\n", err)
	os.Exit(0)
}

// fatalOOM reports whether a child's output shows that the Go runtime
// could not get memory for the heap and threw: "out of memory", or under
// the race detector, whose heap must fit a fixed address range, "too many
// address space collisions", or the race detector's own runtime could not
// map shadow memory for a heap that grew a piece at a time (it exits
// without a Go error).
func fatalOOM(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "fatal error: ") &&
		(strings.Contains(s, "out of memory") || strings.Contains(s, "too many address space collisions for -race mode")) ||
		strings.Contains(s, "ThreadSanitizer failed to allocate")
}

// head returns the start of a child's output.
func head(out []byte) []byte {
	if len(out) > 2000 {
		return out[:2000]
	}
	return out
}

// tail returns the end of a child's output.
func tail(out []byte) []byte {
	if len(out) > 2000 {
		return out[len(out)-2000:]
	}
	return out
}

// firstLine returns the first line of out containing s.
func firstLine(out []byte, s string) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestCheckLimitsAcceptsWazeroCorpus runs CheckLimits on every .wasm file
// in wazero's module directory (spec tests, fuzz cases, and Rust, Zig, C,
// C++, TinyGo and Emscripten programs): it must accept every file wazero
// compiles with all its features, and never panic on the others.
func TestCheckLimitsAcceptsWazeroCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles thousands of modules")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tetratelabs/wazero").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("wazero's module directory not found: %v", err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
	defer r.Close(ctx)
	var files, compiled int
	worst, worstFile := 0.0, ""
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".wasm") {
			return err
		}
		wasm, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		c := &limitChecker{wasm: wasm, dataCount: -1, slotLimit: slotBase + slotsPerByte*uint64(len(wasm))}
		limitErr := c.check()
		if compiles(ctx, r, wasm) != nil {
			return nil
		}
		compiled++
		if limitErr != nil {
			t.Errorf("%s: wazero compiles it but CheckLimits says %v", path, limitErr)
		}
		if ratio := float64(c.slots) / float64(len(wasm)); ratio > worst {
			worst, worstFile = ratio, path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if compiled < 100 {
		t.Fatalf("only %d of %d files compile", compiled, files)
	}
	t.Logf("%d files, %d compiled, all accepted; most value slots per byte: %.2f (%s)", files, compiled, worst, worstFile)
}

// compiles compiles wasm with r and closes the result. wazero v1.12 panics
// on some invalid modules with exception handling enabled; a panic counts
// as a rejection.
func compiles(ctx context.Context, r wazero.Runtime, wasm []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("wazero panicked: %v", p)
		}
	}()
	cm, err := r.CompileModule(ctx, wasm)
	if err == nil {
		cm.Close(ctx)
	}
	return err
}

// TestCheckLimitsAcceptsGoAndWATModules checks real guests: the hello
// example and the Go test guests (GOOS=wasip1, -buildmode=c-shared) and
// the runtime's WAT test modules (compiled with wat2wasm when installed).
func TestCheckLimitsAcceptsGoAndWATModules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	root := moduleRoot(t)
	mods := map[string][]byte{
		"examples/hello": goBuildWasip1(t, root, "./examples/hello"),
		"goGuest":        buildGoSource(t, goGuest),
		"goLoopGuest":    buildGoSource(t, goLoopGuest),
	}
	wats, _ := filepath.Glob(filepath.Join(root, "runtime", "testdata", "wat", "*.wat"))
	if wat2wasm, err := exec.LookPath("wat2wasm"); err != nil {
		t.Logf("wat2wasm not found, WAT modules skipped: %v", err)
	} else {
		for _, wat := range wats {
			out := filepath.Join(t.TempDir(), "m.wasm")
			if msg, err := exec.Command(wat2wasm, "--enable-all", wat, "-o", out).CombinedOutput(); err != nil {
				t.Fatalf("wat2wasm %s: %v\n%s", wat, err, msg)
			}
			wasm, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			mods["wat/"+filepath.Base(wat)] = wasm
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for name, wasm := range mods {
		c := &limitChecker{wasm: wasm, dataCount: -1, slotLimit: slotBase + slotsPerByte*uint64(len(wasm))}
		start := time.Now()
		if err := c.check(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		took := time.Since(start)
		// The Go guests are compiled by other tests (slowly under -race).
		if strings.HasPrefix(name, "wat/") {
			if err := compiles(ctx, r, wasm); err != nil {
				t.Errorf("%s: wazero rejects it: %v", name, err)
			}
		}
		t.Logf("%-24s %8d bytes, %7d value slots (%.3f per byte), checked in %v", name, len(wasm), c.slots, float64(c.slots)/float64(len(wasm)), took)
	}
}

// compileAlloc compiles wasm (when it is at most 4 KiB) and returns the
// bytes allocated meanwhile.
func compileAlloc(ctx context.Context, r wazero.Runtime, wasm []byte) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_ = compiles(ctx, r, wasm)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxCompileAlloc is what compiling an accepted module of at most 4 KiB
// may allocate.
const maxCompileAlloc = 64 << 20

// TestCheckLimitsAcceptedModulesCompileCheaply compiles the small accepted
// modules, including those near the limits, and bounds the allocation.
func TestCheckLimitsAcceptedModulesCompileCheaply(t *testing.T) {
	mods := validModules()
	tVoid := functype(nil, nil)
	mods["50,000 locals"] = oneFunc(tVoid, 1, uleb(50_000), i32, opEnd)
	mods["1,000 parameters and 49,000 locals"] = oneFunc(functype(i32s(1000), nil), 1, uleb(49_000), i32, opEnd)
	mods["calls returning 1,000 values"] = resultsFunc(1000, bytes32(0x10, 0x00, 30), 0x00)
	mods["calls up to the budget"] = resultsFunc(1000, bytes32(0x10, 0x00, 64), 0x00)
	mods["1,000 parameters in each of 60 functions"] = manyFuncs(60, functype(i32s(1000), nil), 0, opEnd)
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
	defer r.Close(ctx)
	for name, wasm := range mods {
		if len(wasm) > 4096 {
			continue
		}
		if err := CheckLimits(wasm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := compileAlloc(ctx, r, wasm)
		if n >= maxCompileAlloc {
			t.Errorf("%s: compiling %d bytes allocated %d MiB", name, len(wasm), n>>20)
		}
		if !strings.Contains(name, "/") {
			t.Logf("%s: compiling %d bytes allocated %.1f MiB", name, len(wasm), float64(n)/(1<<20))
		}
	}
}

// bytes32 repeats the two-byte instruction a b n times.
func bytes32(a, b byte, n int) []byte {
	out := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		out = append(out, a, b)
	}
	return out
}

// FuzzCheckLimits checks that CheckLimits never panics or modifies its
// input, that its errors wrap exactly one of ErrLimit and ErrMalformed and
// name a byte offset, and that wazero compiles every accepted input of at
// most 4 KiB allocating less than 64 MiB.
func FuzzCheckLimits(f *testing.F) {
	for _, wasm := range validModules() {
		if len(wasm) <= 4096 {
			f.Add(wasm)
		}
	}
	for _, tc := range hostileCases() {
		if len(tc.wasm) <= 4096 {
			f.Add(tc.wasm)
		}
	}
	f.Add(oneFunc(functype(nil, nil), 1, uleb(50_000), i32, opEnd))
	f.Add(resultsFunc(1000, bytes32(0x10, 0x00, 30), 0x00))
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(allFeatures))
	f.Cleanup(func() { r.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		in := append([]byte(nil), wasm...)
		err := CheckLimits(wasm)
		if string(in) != string(wasm) {
			t.Fatal("input was modified")
		}
		if err != nil {
			if errors.Is(err, ErrLimit) == errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v must wrap exactly one of ErrLimit and ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), "byte offset") {
				t.Fatalf("error %v names no byte offset", err)
			}
			return
		}
		// The engine's next steps: every module CheckLimits and CapTables
		// accept has a table budget TableBytes can tell.
		if capped, err := CapTables(wasm, MaxTableGrowth); err == nil {
			if _, err := TableBytes(capped); err != nil {
				t.Fatalf("TableBytes refuses a capped module: %v", err)
			}
		}
		if len(wasm) > 4096 {
			return
		}
		if n := compileAlloc(ctx, r, wasm); n >= maxCompileAlloc {
			t.Fatalf("CheckLimits accepts a %d-byte module whose compilation allocated %d MiB: %x", len(wasm), n>>20, wasm)
		}
	})
}
