;; Test guest for runtime tests: init-loop. A reactor whose _initialize
;; never returns (no start section, so its loops are instrumented).
(module
  (memory (export "memory") 2)
  (func (export "_initialize") (loop $l (br $l)))
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))
