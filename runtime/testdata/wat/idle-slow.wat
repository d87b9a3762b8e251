;; Test guest for runtime tests: idle-slow. Its gojinn_v1_idle spins for
;; 200 million loop iterations (tenths of a second, more than a tight
;; request timeout); its response body is 4 bytes, little-endian, the
;; number of requests this instance has served, this one included.
(module
  (memory (export "memory") 2)
  (global $served (mut i32) (i32.const 0))
  (global $sink (mut i32) (i32.const 0))
  (data (i32.const 1024) "GJS\01\01\02\c8\01\03\04\00\00\00\00")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (global.set $served (i32.add (global.get $served) (i32.const 1)))
    (i32.store (i32.const 1034) (global.get $served))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 14)))
  (func (export "gojinn_v1_idle")
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 200000000))))
    (global.set $sink (local.get $i))))
