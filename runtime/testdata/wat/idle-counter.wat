;; Test guest for runtime tests: idle-counter. A reactor exporting
;; gojinn_v1_idle: its response body is 4 bytes, little-endian, the number
;; of idle calls so far.
(module
  (memory (export "memory") 2)
  (global $idles (mut i32) (i32.const 0))
  (data (i32.const 1024) "GJS\01\01\02\c8\01\03\04\00\00\00\00")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i32.store (i32.const 1034) (global.get $idles))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 14)))
  (func (export "gojinn_v1_idle")
    (global.set $idles (i32.add (global.get $idles) (i32.const 1)))))
