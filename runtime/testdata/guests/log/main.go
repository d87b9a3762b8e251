// Command log is a test guest for the gojinn_log_v1 host function and
// the capture of stdout and stderr: the path picks what it logs, or
// (under /abuse/) a raw call with a bad pointer.
package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

func init() { gojinn.HandleFunc(handle) }

func main() { gojinn.Run() }

func handle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/levels":
		gojinn.LogDebug("debug line", "n", 1)
		gojinn.LogInfo("info line", "s", "x\"y", "ok", true)
		gojinn.LogWarn("warn line", "d", 1500*time.Millisecond)
		gojinn.LogError("error line", "err", fmt.Errorf("boom"))
		gojinn.Log(slog.Level(2), "between info and warn")
	case r.URL.Path == "/slog":
		log := slog.New(gojinn.LogHandler()).With("a", 1).WithGroup("g")
		log.Info("from slog", "k", "v", slog.Group("sub", "x", 2))
	case r.URL.Path == "/print":
		// A command's stdout is its response: print there only when pooled.
		if q.Get("stdout") != "" {
			fmt.Println("out one")
			fmt.Print("out two\r\n\n")
		}
		fmt.Fprintln(os.Stderr, "err one")
		fmt.Fprint(os.Stderr, "err two")
	case r.URL.Path == "/many":
		n, _ := strconv.Atoi(q.Get("n"))
		for i := range n {
			gojinn.LogInfo("line", "i", i)
		}
	case r.URL.Path == "/flood":
		// n lines of size bytes on stderr: past its cap, the capture cuts.
		n, _ := strconv.Atoi(q.Get("n"))
		size, _ := strconv.Atoi(q.Get("size"))
		line := strings.Repeat("x", size) + "\n"
		for range n {
			os.Stderr.WriteString(line)
		}
	case r.URL.Path == "/huge":
		gojinn.LogInfo(strings.Repeat("é", 5000)) // 10000 bytes
	case r.URL.Path == "/panic":
		gojinn.LogInfo("before the panic")
		os.Stderr.WriteString("about to exit\n")
		os.Exit(3)
	case strings.HasPrefix(r.URL.Path, "/abuse/"):
		fmt.Fprint(w, abuse(strings.TrimPrefix(r.URL.Path, "/abuse/")))
		return
	}
	fmt.Fprint(w, "ok")
}
