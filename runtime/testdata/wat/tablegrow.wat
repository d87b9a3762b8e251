;; Test guest for runtime tests: tablegrow. Asks to grow a table without a
;; declared maximum by 2^31-1 entries; it must get -1, not crash the host.
(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (data (i32.const 1024) "GJS\01\01\02\c8\01")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 4096))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (if (i32.ne (table.grow 0 (ref.null func) (i32.const 0x7fffffff)) (i32.const -1))
      (then unreachable))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
