;; Test guest for runtime tests: import-memory-wasi. Like import-memory,
;; from a host module the node does provide.
(module
  (import "wasi_snapshot_preview1" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 0))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))
