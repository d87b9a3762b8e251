;; Test guest for runtime tests: growmem.
(module
  (memory (export "memory") 2)
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

  ;; grows one page at a time until refused, then traps.
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
