// Package runtime executes Gojinn functions: WebAssembly modules run in
// wazero sandboxes with memory, time and CPU limits, either fresh per
// request (isolated) or from warm, optionally reset, instance pools (pooled).
package runtime
