;; Test guest for runtime tests (reset_tables_test.go): reset-init-called.
;; Its _initialize sets a table slot, and its handler calls _initialize
;; again, so the write happens after the snapshot too: the deploy is
;; refused with reset, although writes in _initialize alone are accepted.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01") ;; status 200
  (table $t 1 funcref)
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 4096))
  (func $init (export "_initialize")
    (table.set $t (i32.const 0) (ref.null func)))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (call $init)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
