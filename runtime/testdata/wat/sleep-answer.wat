;; Test guest for runtime tests: sleep-answer. Its handler logs "running",
;; sleeps 100 s once (WASI poll_oneoff on a clock) and then answers 200
;; with tiny-reactor's response. It has no loop, so a guest woken early by
;; the host's stop returns normally, before any check of the stop: the
;; host must fail the call all the same, not serve this answer.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (data (i32.const 2048) "running")
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (drop (call $log (i32.const 0) (i32.const 2048) (i32.const 7) (i32.const 0) (i32.const 0)))
    ;; One clock subscription at 4096 (tag 0 at +8, clock 0 at +16): a
    ;; relative timeout of 100 s at +24.
    (i64.store (i32.const 4120) (i64.const 100000000000))
    (drop (call $poll (i32.const 4096) (i32.const 4352) (i32.const 1) (i32.const 4480)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
