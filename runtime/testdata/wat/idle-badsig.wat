;; Test guest for runtime tests: idle-badsig. Its gojinn_v1_idle takes an
;; argument, which the ABI does not allow.
(module
  (memory (export "memory") 1)
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 1024))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0))
  (func (export "gojinn_v1_idle") (param i32)))
