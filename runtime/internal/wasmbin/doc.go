// Package wasmbin is a small, strict WebAssembly binary rewriter: it exports a module's mutable globals so the host can snapshot and restore them, instruments every loop with a check of a host-settable stop global, and finds the table and segment writes a reset cannot undo.
package wasmbin
