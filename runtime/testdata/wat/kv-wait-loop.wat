;; Test guest for runtime tests: kv-wait-loop. Its handler reads key "k"
;; of its own namespace (gojinn_kv_v1 get) over and over, forever; the
;; test's store blocks in Get until the call's context ends.
(module
  (import "gojinn_kv_v1" "get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "k")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (loop $forever
      (drop (call $get (i32.const 0) (i32.const 0) (i32.const 1024) (i32.const 1) (i32.const 0) (i32.const 2048)))
      (br $forever))
    (i64.const 0)))
