;; Test guest for runtime tests: start-loop. A reactor whose wasm start
;; section never returns: every instantiation must be stopped.
(module
  (memory (export "memory") 2)
  (func $init (loop $l (br $l)))
  (start $init)
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64) (i64.const 0)))
