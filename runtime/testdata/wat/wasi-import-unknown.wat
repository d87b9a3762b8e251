;; Test guest for runtime tests: a command importing a function that WASI
;; preview 1 does not have (sock_open is a WasmEdge extension); the node
;; must refuse it at deploy.
(module
  (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
