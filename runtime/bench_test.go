package runtime_test

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// BenchmarkInvoke measures one invocation end to end through
// Function.Invoke: request encoding, instance acquisition, the guest call,
// response decoding and, where set, the reset. docs/benchmarks.md records
// the results.
func BenchmarkInvoke(b *testing.B) {
	helloCmd := runtimetest.BuildGo(b, "examples/hello", false)
	helloReactor := runtimetest.BuildGo(b, "examples/hello", true)
	helloRaw := runtimetest.BuildGo(b, "examples/hello-raw", true)
	cases := []struct {
		name  string
		mod   []byte
		mode  runtime.Mode
		reset runtime.Reset
	}{
		{"isolated-go", helloCmd, runtime.ModeIsolated, runtime.ResetNone},
		{"isolated-tiny", runtimetest.WAT(b, "examples/raw-wat/main.wat"), runtime.ModeIsolated, runtime.ResetNone},
		{"isolated-tiny-reactor", wat(b, "tiny-reactor"), runtime.ModeIsolated, runtime.ResetNone},
		{"pooled-tiny", wat(b, "tiny-reactor"), runtime.ModePooled, runtime.ResetNone},
		{"pooled-go", helloReactor, runtime.ModePooled, runtime.ResetNone},
		{"pooled-go-reset-copy", helloReactor, runtime.ModePooled, runtime.ResetCopy},
		{"pooled-go-reset-cow", helloReactor, runtime.ModePooled, runtime.ResetCoW},
		{"pooled-go-raw", helloRaw, runtime.ModePooled, runtime.ResetNone},
		{"pooled-go-raw-reset-copy", helloRaw, runtime.ModePooled, runtime.ResetCopy},
		{"pooled-go-raw-reset-cow", helloRaw, runtime.ModePooled, runtime.ResetCoW},
	}
	e := newEngine(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := load(b, e, runtime.FunctionSpec{Name: c.name, Module: c.mod, Mode: c.mode, Reset: c.reset,
				Limits: runtime.Limits{MaxInstances: 1}})
			req := get("/?name=bench")
			ctx := context.Background()
			if _, err := f.Invoke(ctx, req); err != nil { // warm the pool
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			guest := make([]time.Duration, 0, 1<<16)
			for b.Loop() {
				res, err := f.Invoke(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if len(guest) < cap(guest) {
					guest = append(guest, res.CPUTime)
				}
			}
			reportCPU(b, cpu0)
			// The median CPU time of the guarded guest call as the runtime
			// measures it (Result.CPUTime): the guest's share, and the
			// figure least disturbed by other load on the machine.
			var sum time.Duration
			for _, d := range guest {
				sum += d
			}
			slices.Sort(guest)
			b.ReportMetric(float64(guest[len(guest)/2]), "guest-p50-ns")
			b.ReportMetric(float64(sum)/float64(len(guest)), "guest-mean-ns")
		})
	}
}

// BenchmarkCompile compares compiling a Go guest from scratch with loading
// it from the disk caches (a node restart): examples/hello (about 6 MB,
// net/http) and runtime/testdata/guests/json3mb (about 3 MB).
func BenchmarkCompile(b *testing.B) {
	mods := []struct {
		name string
		mod  []byte
	}{
		{"hello", runtimetest.BuildGo(b, "examples/hello", true)},
		{"json3mb", runtimetest.BuildGo(b, "runtime/testdata/guests/json3mb", true)},
	}
	for _, m := range mods {
		b.Logf("%s: module size %d bytes", m.name, len(m.mod))
		mod := m.mod
		b.Run(m.name+"/scratch", func(b *testing.B) {
			for b.Loop() {
				e := newEngine(b, func(c *runtime.Config) { c.CacheDir = "" })
				load(b, e, runtime.FunctionSpec{Module: mod, Mode: runtime.ModePooled})
				_ = e.Close(context.Background())
			}
		})
		b.Run(m.name+"/disk-cache", func(b *testing.B) {
			dir := b.TempDir()
			warm := newEngine(b, func(c *runtime.Config) { c.CacheDir = dir })
			load(b, warm, runtime.FunctionSpec{Module: mod, Mode: runtime.ModePooled})
			_ = warm.Close(context.Background())
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				e := newEngine(b, func(c *runtime.Config) { c.CacheDir = dir })
				load(b, e, runtime.FunctionSpec{Module: mod, Mode: runtime.ModePooled})
				_ = e.Close(context.Background())
			}
			reportCPU(b, cpu0)
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/(float64(len(mod))/(1<<20)), "ms/MiB")
		})
	}
}

// processCPU returns the CPU time (user and system) the test process has
// used so far.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// reportCPU adds the process CPU time per operation since cpu0 as the
// cpu-ns/op metric. On a shared machine the wall-clock ns/op grows with
// the load; CPU time per operation much less, so comparisons use both.
func reportCPU(b *testing.B, cpu0 int64) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkInvokeCold measures one pooled invocation after the machine
// idled for a millisecond, as a function sees it under light traffic: an
// idle CPU loses much of its caches (to deep sleep states, or to other
// tenants of a shared host), and the guest's code and data come back from
// memory. An operation is the idle gap plus the call; invoke-ns is the
// call alone and guest-p50-ns the guest's share as the runtime measures
// it. Compare them with BenchmarkInvoke, where every call finds the
// caches warm (docs/benchmarks.md).
func BenchmarkInvokeCold(b *testing.B) {
	cases := []struct {
		name string
		mod  []byte
	}{
		{"pooled-tiny", wat(b, "tiny-reactor")},
		{"pooled-go", runtimetest.BuildGo(b, "examples/hello", true)},
		{"pooled-go-raw", runtimetest.BuildGo(b, "examples/hello-raw", true)},
	}
	e := newEngine(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := load(b, e, runtime.FunctionSpec{Name: c.name, Module: c.mod, Mode: runtime.ModePooled,
				Limits: runtime.Limits{MaxInstances: 1}})
			req := get("/?name=bench")
			ctx := context.Background()
			if _, err := f.Invoke(ctx, req); err != nil { // warm the pool
				b.Fatal(err)
			}
			var calls time.Duration
			guest := make([]time.Duration, 0, 1<<12)
			for b.Loop() {
				time.Sleep(time.Millisecond)
				start := time.Now()
				res, err := f.Invoke(ctx, req)
				calls += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if len(guest) < cap(guest) {
					guest = append(guest, res.CPUTime)
				}
			}
			slices.Sort(guest)
			b.ReportMetric(float64(calls)/float64(b.N), "invoke-ns")
			b.ReportMetric(float64(guest[len(guest)/2]), "guest-p50-ns")
		})
	}
}
