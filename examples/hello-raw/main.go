// Command hello-raw is examples/hello written against the SDK's raw handler
// API (gojinn.HandleRaw) instead of net/http: same answers, without the
// *http.Request, URL and header map a net/http handler gets, which are most
// of a small pooled Go function's cost (docs/benchmarks.md).
package main

import (
	gojinn "github.com/gojinn/gojinn/sdk/go"
)

func init() {
	gojinn.HandleRaw(func(w *gojinn.RawResponse, r *gojinn.RawRequest) {
		name := r.Query("name")
		if name == "" {
			name = "world"
		}
		w.SetHeader("Content-Type", "text/plain; charset=utf-8")
		w.WriteString("Hello, ")
		w.WriteString(name)
		w.WriteString("!\n")
	})
}

func main() { gojinn.Run() }
