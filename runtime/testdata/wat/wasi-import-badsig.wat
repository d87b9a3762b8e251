;; Test guest for runtime tests: a command importing WASI's fd_write with
;; the wrong signature (it is (i32 i32 i32 i32) -> i32); the node must
;; refuse it at deploy instead of failing every request.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
