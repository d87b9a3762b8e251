;; Test guest for runtime tests (reset_tables_test.go): reset-data-drop.
;; The handler copies a passive data segment into memory, then drops the
;; segment: without reset the second request on an instance traps on the
;; dropped segment. With reset the deploy is refused (memory is restored,
;; the segment would stay dropped).
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01") ;; status 200
  (data (i32.const 1040) "GJS\01\01\02\c9\01") ;; status 201
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 4096))
  (data $d "x")
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (memory.init $d (i32.const 2048) (i32.const 0) (i32.const 1))
    (data.drop $d)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
