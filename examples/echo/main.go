// Command echo answers with what it received: method, path, query, headers
// and body. The status comes from ?status=, extra response headers from
// ?set=Name:value (repeatable), and a binary body is echoed byte for byte.
// Every request logs one line with the method, path and body size.
package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	gojinn "github.com/gojinn/gojinn/sdk/go"
)

func init() { gojinn.HandleFunc(echo) }

func main() { gojinn.Run() }

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	for _, kv := range q["set"] {
		name, value, ok := strings.Cut(kv, ":")
		if !ok {
			http.Error(w, "set must be Name:value", http.StatusBadRequest)
			return
		}
		w.Header().Add(name, value)
	}
	status := http.StatusOK
	if s := q.Get("status"); s != "" {
		if status, err = strconv.Atoi(s); err != nil || status < 200 || status > 599 {
			http.Error(w, "status must be a number from 200 to 599", http.StatusBadRequest)
			return
		}
	}
	// One structured log line per request (`gojinn-node logs echo`).
	gojinn.LogInfo("echo", "method", r.Method, "path", r.URL.Path, "bytes", len(body))
	if r.URL.Path == "/raw" { // the body back, byte for byte
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s %s %s\n", r.Method, r.URL.Path, r.Proto)
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "query %s=%s\n", k, strings.Join(q[k], ","))
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "header %s: %s\n", k, strings.Join(r.Header[k], ","))
	}
	fmt.Fprintf(w, "body %d bytes: %q\n", len(body), body)
	if info := gojinn.Info(r); info != nil {
		fmt.Fprintf(w, "function %s@%s request %s\n", info.Function, info.FunctionVersion, info.RequestID)
	}
}
