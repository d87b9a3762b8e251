package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/storage"
)

// `functions show` names every limit a deploy set, sizes exactly (8500
// KiB is not "8 MiB"), in the form the deploy flags read back.
func TestLimitsText(t *testing.T) {
	l := storage.Limits{
		MemoryBytes: 8500 << 10, Timeout: storage.Duration(5 * time.Second), CPUTime: storage.Duration(time.Second),
		MaxRequestBody: 20 << 20, MaxResponseBody: 1000, MaxInstances: 3, QueueTimeout: storage.Duration(2 * time.Second),
	}
	got := limitsText(l)
	want := "memory 8500 KiB, timeout 5s, cpu 1s, request body 20 MiB, response body 1000 B, instances 3, queue 2s"
	if got != want {
		t.Fatalf("limitsText = %q, want %q", got, want)
	}
	if got := limitsText(storage.Limits{}); got != "defaults" {
		t.Fatalf("no limits: %q", got)
	}
	for _, n := range []int64{1, 1000, 1 << 10, 8500 << 10, 64 << 20, 3 << 30, 3<<30 + 1} {
		var b byteSize
		if err := b.Set(bytesText(n)); err != nil || int64(b) != n {
			t.Errorf("bytesText(%d) = %q reads back as %d (%v)", n, bytesText(n), b, err)
		}
	}
	if s := bytesText(64 << 20); !strings.HasSuffix(s, "MiB") {
		t.Errorf("bytesText(64 MiB) = %q", s)
	}
}
