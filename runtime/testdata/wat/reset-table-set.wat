;; Test guest for runtime tests (reset_tables_test.go): reset-table-set.
;; The handler sets table slot 0 to slot 1 (set by an active element
;; segment).
;; Answers 200 when it finds the state an instance starts with and 201
;; when an earlier request changed it, so without reset the second
;; request on an instance tells. With reset the deploy is refused: a
;; reset does not restore tables or segments.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01") ;; status 200
  (data (i32.const 1040) "GJS\01\01\02\c9\01") ;; status 201
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 4096))
  (table $t 2 funcref)
  (elem (table $t) (i32.const 1) func $handle)
  (func $handle (export "gojinn_v1_handle") (param i32) (result i64)
    (local $seen i32)
    (local.set $seen (i32.eqz (ref.is_null (table.get $t (i32.const 0)))))
    (table.set $t (i32.const 0) (table.get $t (i32.const 1)))
    (i64.or (i64.shl (i64.extend_i32_u (select (i32.const 1040) (i32.const 1024) (local.get $seen))) (i64.const 32)) (i64.const 8))))
