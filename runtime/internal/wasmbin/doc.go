// Package wasmbin is a small, strict WebAssembly binary rewriter: it exports a module's mutable globals so the host can snapshot and restore them, and instruments every loop with a check of a host-settable stop global.
package wasmbin
