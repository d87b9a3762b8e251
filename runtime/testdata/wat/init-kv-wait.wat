;; Test guest for runtime tests: init-kv-wait. tiny-reactor whose
;; _initialize reads key "k" of its own namespace (gojinn_kv_v1 get) once
;; and returns whatever the answer: it has no loop, so when the host stops
;; it during the read (the test's store blocks in Get until the call's
;; context ends) the guest returns normally, before any check of the stop.
(module
  (import "gojinn_kv_v1" "get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (data (i32.const 2048) "k")
  (func (export "_initialize")
    (drop (call $get (i32.const 0) (i32.const 0) (i32.const 2048) (i32.const 1) (i32.const 0) (i32.const 3072))))
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
