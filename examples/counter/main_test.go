package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime"
	"github.com/gojinn/gojinn/runtime/enginetest"
	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The counter runs in every mode against an in-memory KV: sequential
// requests count up per path, and concurrent ones never lose an update.
func TestCounter(t *testing.T) {
	kv := runtime.NewMemKV()
	cfg := runtime.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheDir = runtimetest.CacheDir()
	cfg.KV = kv
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })

	for _, m := range enginetest.GoModes {
		t.Run(m.Name, func(t *testing.T) {
			f, err := e.Load(context.Background(), runtime.FunctionSpec{
				Name: m.Name, Version: "test", Module: runtimetest.BuildGo(t, "examples/counter", m.Reactor),
				Mode: m.Mode, Reset: m.Reset, Limits: runtime.Limits{QueueTimeout: time.Minute},
			})
			if err != nil {
				t.Fatal(err)
			}
			count := func(path string) uint64 {
				resp := enginetest.Invoke(t, f, enginetest.Request("GET", path, nil, nil))
				n, err := strconv.ParseUint(string(resp.Body), 10, 64)
				if resp.StatusOrDefault() != 200 || err != nil {
					t.Fatalf("GET %s: %d %q", path, resp.StatusOrDefault(), resp.Body)
				}
				return n
			}
			for i := uint64(1); i <= 3; i++ {
				if n := count("/a"); n != i {
					t.Fatalf("GET /a #%d answered %d", i, n)
				}
			}
			if n := count("/b"); n != 1 {
				t.Fatalf("GET /b answered %d, want 1 (counters are per path)", n)
			}

			const workers, each = 8, 5
			seen := make(chan uint64, workers*each)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range each {
						seen <- count("/c")
					}
				})
			}
			wg.Wait()
			close(seen)
			got := map[uint64]bool{}
			for n := range seen {
				if got[n] {
					t.Fatalf("two requests answered %d: an update was lost", n)
				}
				got[n] = true
			}
			for i := uint64(1); i <= workers*each; i++ {
				if !got[i] {
					t.Fatalf("no request answered %d (answers %v)", i, got)
				}
			}
			v, _, err := kv.Get(context.Background(), m.Name, "/c", true)
			if err != nil || string(v) != strconv.Itoa(workers*each) {
				t.Fatalf("stored counter %q, %v; want %d", v, err, workers*each)
			}
		})
	}
}
