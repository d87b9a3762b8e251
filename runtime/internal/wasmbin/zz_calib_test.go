package wasmbin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

func TestZZCalib(t *testing.T) {
	mods := map[string][]byte{}
	mods["hello"] = goBuildWasip1(t, moduleRoot(t), "./examples/hello")
	mods["goguest"] = buildGoSource(t, goGuest)
	mods["goloop"] = buildGoSource(t, goLoopGuest)
	files, _ := filepath.Glob(filepath.Join(moduleRoot(t), "runtime/testdata/wat/*.wat"))
	for _, f := range files {
		out := filepath.Join(t.TempDir(), "x.wasm")
		if msg, err := exec.Command("wat2wasm", "--enable-all", f, "-o", out).CombinedOutput(); err != nil {
			t.Logf("%s: %v %s", f, err, msg)
			continue
		}
		b, _ := os.ReadFile(out)
		mods[filepath.Base(f)] = b
	}
	for name, w := range mods {
		c := &limitChecker{wasm: w, dataCount: -1}
		st := time.Now()
		err := c.check()
		d := time.Since(st)
		t.Logf("%-20s %8d bytes err=%v slots=%d (%.3f/byte) maxArity=%d types=%d funcs=%d in %v", name, len(w), err, c.slots, float64(c.slots)/float64(len(w)), c.maxArity, len(c.types), len(c.funcTypes), d)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cm, err := r.CompileModule(ctx, mods["hello"])
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	cm.Close(ctx)
	t.Logf("hello compile: TotalAlloc %d MB (%.1f per byte)", (m1.TotalAlloc-m0.TotalAlloc)>>20, float64(m1.TotalAlloc-m0.TotalAlloc)/float64(len(mods["hello"])))
}
