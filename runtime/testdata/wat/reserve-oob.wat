;; Test guest for runtime tests: reserve-oob.
(module
  (memory (export "memory") 1)
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 0xfffff000))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))
