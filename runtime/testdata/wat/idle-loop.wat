;; Test guest for runtime tests: idle-loop. Its gojinn_v1_idle never
;; returns; its requests answer with an empty 200.
(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "GJS\01\01\02\c8\01")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8)))
  (func (export "gojinn_v1_idle")
    (loop $forever (br $forever))))
