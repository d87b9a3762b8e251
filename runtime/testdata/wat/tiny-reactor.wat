;; Test guest for runtime tests: tiny-reactor.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  ;; gojinn_v1_reserve(n): the request buffer lives at 65536 and memory
  ;; grows to fit it.
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))

  ;; gojinn_v1_handle(n) -> ptr<<32 | len of a constant response.
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
