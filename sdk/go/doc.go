// Package gojinn is the Go guest SDK: it runs a normal net/http handler as a
// Gojinn function, built with GOOS=wasip1 GOARCH=wasm.
//
// Register the handler in init and call Run from main:
//
//	func init() { gojinn.HandleFunc(hello) }
//	func main() { gojinn.Run() }
//
// Built normally the module is a WASI command (isolated mode: one request
// on stdin, one response on stdout). Built with -buildmode=c-shared it is a
// reactor that exports the pooled ABI (gojinn_v1_reserve, gojinn_v1_handle),
// so the same source serves both execution modes. See
// docs/guest-protocol.md.
//
// Functions keep state in the node's replicated key-value store through
// KV, KVNamespace and the KVGet, KVPut, KVDelete and KVList shortcuts
// (kv.go; the gojinn_kv_v1 host functions), and send structured log
// lines with LogInfo (and LogDebug, LogWarn, LogError, Log) or through
// log/slog with LogHandler (log.go; the gojinn_log_v1 host function).
//
// HandleRaw registers a raw handler instead: it gets the request's fields
// (RawRequest) and writes into a reused RawResponse, without the
// *http.Request, URL and header maps a net/http handler needs, which are
// most of a small pooled function's cost under WebAssembly. See
// examples/hello-raw and docs/guest-protocol.md, "The Go SDK".
//
// As with net/http, the http.ResponseWriter (and the Header map it returns)
// must not be used after the handler returns: a reactor reuses the writer,
// its header map and its body buffer for the next request, because
// allocation is the largest cost of a Go guest under WebAssembly. The
// *http.Request, its URL and its Header are fresh for every request and may
// be kept.
//
// Two environment variables set by the host tune the Go runtime in the
// sandbox: GOMEMLIMIT (read by the Go runtime itself) from the function's
// memory limit, and GOJINN_HEAP_RESERVE, which makes a reactor grow its
// heap by that many bytes and free them before the host snapshots an
// instance it resets, so that requests fit in the snapshot's free heap.
package gojinn
