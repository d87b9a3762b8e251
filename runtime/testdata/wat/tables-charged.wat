;; Test guest for runtime tests: tables-charged. Its table takes 8,000,000
;; bytes of every instance (1,000,000 entries of 8 bytes, minimum and
;; maximum), outside linear memory; the function's memory limit counts
;; them. gojinn_v1_handle grows linear memory to 12 MiB and answers 200,
;; or traps when the grow is refused: under a 16 MiB limit it is (12 MiB
;; and the table's 8 MB are more), under 24 MiB it is not.
(module
  (memory (export "memory") 1)
  (table 1000000 1000000 funcref)
  (data (i32.const 1024) "GJS\01\01\02\c8\01")
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (if (i32.gt_s (i32.sub (i32.const 192) (memory.size)) (i32.const 0))
      (then (if (i32.eq (memory.grow (i32.sub (i32.const 192) (memory.size))) (i32.const -1))
        (then unreachable))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
