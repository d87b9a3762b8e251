package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gojinn/gojinn/runtime/runtimetest"
)

// The dev node serves the hello example over a real socket and shuts down
// cleanly on cancellation.
func TestDevServesHello(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "hello.wasm")
	if err := os.WriteFile(mod, runtimetest.BuildGo(t, "examples/hello", true), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--data", dir, "--module", mod}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no startup line: %v\nstderr: %s", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	url := regexp.MustCompile(`http://[0-9.:]+/`).FindString(line)
	if url == "" {
		t.Fatalf("startup line has no URL: %q", line)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url + "?name=dev")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "Hello, dev!\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// An oversized body is refused with a clear 413 and the node carries on.
	big := strings.NewReader(strings.Repeat("x", 11<<20))
	resp, err = client.Post(url, "text/plain", big)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "exceeds") {
		t.Fatalf("oversized body: %d %q", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d\nstderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev node did not shut down")
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Fatalf("no args: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errb.String())
	}
	errb.Reset()
	code := run(context.Background(), []string{"dev", "--module", "/nonexistent.wasm", "--data", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "make examples") {
		t.Fatalf("missing module: %d %q", code, errb.String())
	}
	errb.Reset()
	mod := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(mod, []byte("not wasm"), 0o644)
	code = run(context.Background(), []string{"dev", "--module", mod, "--data", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "invalid module") {
		t.Fatalf("bad module: %d %q", code, errb.String())
	}
}
