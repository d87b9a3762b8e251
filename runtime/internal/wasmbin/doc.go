// Package wasmbin is a small, strict WebAssembly binary rewriter that exports a module's mutable globals so the host can snapshot and restore them.
package wasmbin
