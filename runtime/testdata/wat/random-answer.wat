;; Test guest for runtime tests: random-answer. Its handler grows memory
;; to 258 pages and reads 16 MiB from WASI random_get four times (tens of
;; milliseconds of CPU time in the host function, on the guest's thread),
;; then answers 200 with tiny-reactor's response. Straight-line code: no
;; loop and no call into the guest between the reads, so a guest the host
;; stopped during a read returns normally, before any check of the stop.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (if (i32.lt_u (memory.size) (i32.const 258))
      (then (if (i32.eq (memory.grow (i32.sub (i32.const 258) (memory.size))) (i32.const -1)) (then unreachable))))
    (drop (call $random (i32.const 131072) (i32.const 16777216)))
    (drop (call $random (i32.const 131072) (i32.const 16777216)))
    (drop (call $random (i32.const 131072) (i32.const 16777216)))
    (drop (call $random (i32.const 131072) (i32.const 16777216)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
