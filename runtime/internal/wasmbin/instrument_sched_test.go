package wasmbin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const schedChildEnv = "WASMBIN_SCHED_CHILD"

// TestInstrumentLoopsLetsTheGoRuntimeRun runs more spinning guests than
// there are Ps and forces garbage collections while they spin. Go cannot
// preempt wazero's machine code, so without the periodic exit to Go in the
// instrumentation the first stop-the-world would wait forever for the
// spinning goroutines, and the goroutine that sets the stop global would
// never run. The scenario runs in a child process so that a hang is a
// failure with a message, not a stuck test binary.
func TestInstrumentLoopsLetsTheGoRuntimeRun(t *testing.T) {
	if os.Getenv(schedChildEnv) == "1" {
		if err := spinAndCollect(); err != nil {
			t.Fatal(err)
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestInstrumentLoopsLetsTheGoRuntimeRun$", "-test.v")
	cmd.Env = append(os.Environ(), schedChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the child hung with guests spinning (killed after 60s):\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "spinning guests") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// spinAndCollect starts GOMAXPROCS+1 instrumented infinite loops, collects
// garbage while they spin, then stops them through the stop global.
func spinAndCollect() error {
	out, err := InstrumentLoops(spinModule())
	if err != nil {
		return err
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, out)
	if err != nil {
		return err
	}
	n := runtime.GOMAXPROCS(0) + 1
	mods := make([]api.Module, n)
	done := make(chan error, n)
	for i := range mods {
		if mods[i], err = r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(fmt.Sprint("spin", i))); err != nil {
			return err
		}
		go func(m api.Module) {
			_, err := m.ExportedFunction("spin").Call(ctx)
			done <- err
		}(mods[i])
	}
	for _, m := range mods {
		for m.ExportedGlobal("count").Get() < 100000 {
			time.Sleep(time.Millisecond)
		}
	}
	start := time.Now()
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	gc := time.Since(start)
	for _, m := range mods {
		m.ExportedGlobal(StopGlobalName).(api.MutableGlobal).Set(1)
	}
	deadline := time.After(10 * time.Second)
	for range mods {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				return fmt.Errorf("spin returned %v, want an unreachable trap", err)
			}
		case <-deadline:
			return fmt.Errorf("guests still running 10s after the stop")
		}
	}
	fmt.Printf("%d spinning guests on %d Ps: 5 GCs took %v\n", n, runtime.GOMAXPROCS(0), gc)
	return nil
}
