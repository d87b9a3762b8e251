;; Test guest for runtime tests: init-slow. tiny-reactor whose _initialize
;; computes for a while (a countdown from 2^28; tens of milliseconds or
;; more on any machine) before returning; requests are as cheap as
;; tiny-reactor's.
(module
  (memory (export "memory") 1)
  (global $spin (mut i32) (i32.const 0))
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (func (export "_initialize")
    (local $n i32)
    (local.set $n (i32.const 268435456))
    (loop $l
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (i32.ne (local.get $n) (i32.const 0))))
    ;; Kept, so the loop is not dead code.
    (global.set $spin (local.get $n)))
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
