package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
)

// tablesGuest returns a reactor with n tables of min entries and no
// maximum, whose gojinn_v1_handle (and _initialize, when init is set)
// grows every table by each of deltas; the handler answers 200 with the
// sum of the tables' sizes (4 bytes, little-endian).
func tablesGuest(t *testing.T, n, min int, init bool, deltas ...int) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteString("(module\n  (memory (export \"memory\") 1)\n")
	for range n {
		fmt.Fprintf(&b, "  (table %d funcref)\n", min)
	}
	b.WriteString(`  (data (i32.const 1024) "GJS\01\01\02\c8\01\03\04")
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func $grow
`)
	for i := range n {
		for _, d := range deltas {
			fmt.Fprintf(&b, "    (drop (table.grow %d (ref.null func) (i32.const %d)))\n", i, d)
		}
	}
	b.WriteString("  )\n")
	if init {
		b.WriteString("  (func (export \"_initialize\") (call $grow))\n")
	}
	b.WriteString("  (func (export \"gojinn_v1_handle\") (param i32) (result i64)\n    (local $s i32)\n    (call $grow)\n")
	for i := range n {
		fmt.Fprintf(&b, "    (local.set $s (i32.add (local.get $s) (table.size %d)))\n", i)
	}
	b.WriteString("    (i32.store (i32.const 1034) (local.get $s))\n    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 14))))\n")
	return assemble(t, b.String())
}

// assemble turns WebAssembly text into a module with wat2wasm.
func assemble(t *testing.T, src string) []byte {
	t.Helper()
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatalf("wat2wasm not found: run `make deps` (installs Debian's wabt): %v", err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tool, in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The security review's module: 10,000 tables, each grown by 100,000
// entries at every request (the cap CapTables used to set per table). It
// passed the deploy check, and one request made wazero allocate 8 GB of
// tables outside the memory limit: a fatal out of memory for the node,
// again at every request. The deploy is refused now, in both modes.
func TestManyTablesRefusedAtDeploy(t *testing.T) {
	e := newEngine(t)
	good := load(t, e, runtime.FunctionSpec{Name: "good", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	// Growing only in requests, as the review's module did: without the
	// fix, an _initialize growing them would kill the process at Check.
	mod := tablesGuest(t, 10_000, 0, false, 100_000)
	for _, mode := range []runtime.Mode{runtime.ModePooled, runtime.ModeIsolated} {
		spec := runtime.FunctionSpec{Name: "tables", Version: "v1", Module: mod, Mode: mode, Limits: runtime.Limits{MemoryBytes: 1 << 20}}
		err := e.Check(context.Background(), spec)
		if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "table count 10000 exceeds the limit of 64") {
			t.Fatalf("%s: Check says %v, want ErrInvalidModule for more than 64 tables", mode, err)
		}
		f, err := e.Load(context.Background(), spec)
		if err == nil {
			// Do not invoke it: without the fix, that kills the process.
			t.Fatalf("%s: the module was loaded (%s)", mode, f.Name())
		}
		if !errors.Is(err, runtime.ErrInvalidModule) {
			t.Fatalf("%s: Load says %v, want ErrInvalidModule", mode, err)
		}
	}
	if st, body := mustInvoke(t, good, get("/")); st != 200 || body != "hello, wasm!\n" {
		t.Fatalf("the healthy function answered %d %q", st, body)
	}
}

// A module at the table limits (64 tables, each grown at initialisation
// and at every request by far more than the module's growth budget)
// gets no more than the budget in all, under concurrent load in every
// mode, while a healthy function keeps serving.
func TestTableBudgetUnderConcurrentLoad(t *testing.T) {
	const tables, min, budget = 64, 10, 10_000 // wasmbin.MaxTables, wasmbin.MaxTableGrowth
	e := newEngine(t)
	good := load(t, e, runtime.FunctionSpec{Name: "good", Module: wat(t, "tiny-reactor"), Mode: runtime.ModePooled})
	mod := tablesGuest(t, tables, min, true, 1<<31-1, 1<<20, 100_000, budget/tables, 1)
	limits := runtime.Limits{MemoryBytes: 1 << 20, Timeout: 10 * time.Second, MaxInstances: 4, QueueTimeout: 10 * time.Second}
	var bad []*runtime.Function
	for _, mc := range allModes {
		if mc.cmd {
			continue // a reactor: the pooled ABI, in isolated mode too
		}
		spec := runtime.FunctionSpec{Name: "tables-" + mc.name, Module: mod, Mode: mc.mode, Reset: mc.reset, Limits: limits}
		if mc.mode == runtime.ModePooled && mc.reset != runtime.ResetNone {
			// It grows tables in requests: refused for reset
			// (reset_tables_test.go).
			if _, err := e.Load(context.Background(), spec); !errors.Is(err, runtime.ErrInvalidModule) {
				t.Fatalf("%s: Load says %v, want ErrInvalidModule", mc.name, err)
			}
			continue
		}
		bad = append(bad, load(t, e, spec))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Add(2)
		go func() { // the guest at its table limits
			defer wg.Done()
			for i := range 6 {
				f := bad[(w+i)%len(bad)]
				res, err := f.Invoke(ctx, get("/"))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", f.Name(), err)
					return
				}
				body := res.Response.Body
				if len(body) != 4 {
					errs <- fmt.Errorf("%s: body %q", f.Name(), body)
					return
				}
				if n := binary.LittleEndian.Uint32(body); n > tables*min+budget || n < tables*min {
					errs <- fmt.Errorf("%s: the tables have %d entries in all; at most %d x %d + %d may be", f.Name(), n, tables, min, budget)
					return
				}
			}
		}()
		go func() { // healthy traffic
			defer wg.Done()
			healthyTraffic(ctx, good, errs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Tables count against the function's memory limit: a module whose table
// takes 8 MB of every instance is refused at deploy under a 4 MiB limit,
// saying why and what to do; under 16 MiB its linear memory may grow to
// what the table leaves (a grow to 12 MiB is refused: ErrMemoryLimit),
// and under 24 MiB to 12 MiB.
func TestTablesCountAgainstMemoryLimit(t *testing.T) {
	e := newEngine(t)
	mod := wat(t, "tables-charged")
	for _, mode := range []runtime.Mode{runtime.ModePooled, runtime.ModeIsolated} {
		t.Run(string(mode), func(t *testing.T) {
			spec := func(mem uint64) runtime.FunctionSpec {
				return runtime.FunctionSpec{Name: fmt.Sprintf("tables-%s-%d", mode, mem>>20), Version: "v1", Module: mod, Mode: mode,
					Limits: runtime.Limits{MemoryBytes: mem}}
			}
			for _, check := range []func(runtime.FunctionSpec) error{
				func(s runtime.FunctionSpec) error { return e.Check(context.Background(), s) },
				func(s runtime.FunctionSpec) error { _, err := e.Load(context.Background(), s); return err },
			} {
				err := check(spec(4 << 20))
				if !errors.Is(err, runtime.ErrInvalidSpec) {
					t.Fatalf("under 4 MiB: %v, want ErrInvalidSpec", err)
				}
				for _, want := range []string{"tables take 8000000 bytes", "memory limit of 4194304 bytes", "raise the limit to at least 8065536 bytes"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the error %q does not say %q", err, want)
					}
				}
			}
			f := load(t, e, spec(16<<20))
			for range 2 {
				if _, err := invoke(t, f, get("/")); !errors.Is(err, runtime.ErrMemoryLimit) {
					t.Fatalf("under 16 MiB: %v, want ErrMemoryLimit", err)
				}
			}
			f = load(t, e, spec(24<<20))
			if st, _ := mustInvoke(t, f, get("/")); st != 200 {
				t.Fatalf("under 24 MiB: status %d", st)
			}
		})
	}
}

// A module importing a table is refused at deploy, in both modes and for
// commands too (which Check does not instantiate): the node provides no
// table to import, and an imported table is outside the module's budget.
func TestImportedTableRefused(t *testing.T) {
	e := newEngine(t)
	for _, src := range []string{
		`(module (import "env" "t" (table 1 funcref)) (memory (export "memory") 1)
		  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 0))
		  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))`,
		`(module (import "env" "t" (table 1 funcref)) (memory (export "memory") 1)
		  (func (export "_start")))`,
	} {
		mod := assemble(t, src)
		for _, mode := range []runtime.Mode{runtime.ModeIsolated, runtime.ModePooled} {
			err := e.Check(context.Background(), runtime.FunctionSpec{Name: "imports-table", Version: "v1", Module: mod, Mode: mode})
			if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "imports a table") {
				t.Errorf("%s: Check says %v, want ErrInvalidModule: imports a table", mode, err)
			}
		}
	}
}
