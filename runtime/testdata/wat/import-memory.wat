;; Test guest for runtime tests: import-memory. A reactor that imports its
;; linear memory instead of defining it; the engine must refuse it.
(module
  (import "env" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 0))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))
