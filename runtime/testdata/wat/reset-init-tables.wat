;; Test guest for runtime tests (reset_tables_test.go): reset-init-tables.
;; Its start function grows the table and its _initialize fills it from a
;; passive element segment, copies a passive data segment into memory and
;; drops both segments: all before the snapshot, so every request sees
;; the same tables and segments, and the deploy is accepted with reset.
;; The handler checks that state and changes none.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01") ;; status 200
  (data $d "x")
  (table $t 1 funcref)
  (elem $e func $handle)
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 4096))
  (func $grow (drop (table.grow $t (ref.null func) (i32.const 1))))
  (start $grow)
  (func (export "_initialize")
    (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1))
    (table.set $t (i32.const 1) (table.get $t (i32.const 0)))
    (elem.drop $e)
    (memory.init $d (i32.const 2048) (i32.const 0) (i32.const 1))
    (data.drop $d))
  (func $handle (export "gojinn_v1_handle") (param i32) (result i64)
    (if (i32.ne (table.size $t) (i32.const 2)) (then unreachable))
    (if (ref.is_null (table.get $t (i32.const 1))) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 2048)) (i32.const 120)) (then unreachable)) ;; "x"
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
