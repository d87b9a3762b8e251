// Command hello is the smallest Gojinn function: it greets the caller.
package main

import (
	"fmt"
	"net/http"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

func init() {
	gojinn.HandleFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello, %s!\n", name)
	})
}

func main() { gojinn.Run() }
