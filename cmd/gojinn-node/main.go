// Command gojinn-node is the Gojinn node. Today it offers `dev`: one
// function served over HTTP on localhost from the runtime; the edge and
// cluster issues turn it into the full node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gojinn/gojinn/edge"
	"github.com/gojinn/gojinn/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: gojinn-node <command> [flags]

commands:
  dev      serve one function on localhost (make run uses it)
  version  print the version

Run 'gojinn-node <command> -h' for a command's flags.
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "gojinn-node", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gojinn-node: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

var version = "dev"

type devFlags struct {
	data     string
	listen   string
	module   string
	name     string
	mode     string
	reset    string
	timeout  time.Duration
	memoryMB uint64
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f devFlags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.data, "data", ".gojinn", "data directory (compilation cache)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&f.module, "module", "bin/examples/hello.pooled.wasm", "WebAssembly module to serve (make examples builds the default)")
	fs.StringVar(&f.name, "name", "hello", "function name")
	fs.StringVar(&f.mode, "mode", "pooled", "execution mode: isolated or pooled")
	fs.StringVar(&f.reset, "reset", "none", "pooled reset: none, auto, copy or cow")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "wall-clock limit per request")
	fs.Uint64Var(&f.memoryMB, "memory-mb", 128, "memory limit per instance, MiB")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if err := serveDev(ctx, f, log, stdout); err != nil {
		log.Error("dev node failed", "err", err)
		return 1
	}
	return 0
}

func serveDev(ctx context.Context, f devFlags, log *slog.Logger, stdout io.Writer) error {
	wasm, err := os.ReadFile(f.module)
	if err != nil {
		return fmt.Errorf("read module: %w (run `make examples` to build the examples)", err)
	}
	cfg := runtime.DefaultConfig()
	cfg.CacheDir = filepath.Join(f.data, "compilecache")
	cfg.Logger = log
	eng, err := runtime.NewEngine(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := eng.Close(context.Background()); err != nil {
			log.Warn("closing the engine", "err", err)
		}
	}()
	_, err = eng.Load(ctx, runtime.FunctionSpec{
		Name: f.name, Version: "dev", Module: wasm,
		Mode: runtime.Mode(f.mode), Reset: runtime.Reset(f.reset),
		Limits: runtime.Limits{Timeout: f.timeout, MemoryBytes: f.memoryMB << 20},
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", f.module, err)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           &edge.Handler{Invoker: eng, Function: f.name, Dev: true, Logger: log},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	fmt.Fprintf(stdout, "gojinn dev node: function %s (%s) on http://%s/\n", f.name, f.mode, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stop accepting, then give in-flight requests a grace period.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
