;; Test guest for runtime tests: sleep-loop. Its handler logs "running",
;; then sleeps an hour at a time (WASI poll_oneoff on a clock) forever.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "running")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    ;; One clock subscription at 4096 (tag 0 at +8, clock 0 at +16): a
    ;; relative timeout of an hour at +24.
    (i64.store (i32.const 4120) (i64.const 3600000000000))
    (drop (call $log (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 0) (i32.const 0)))
    (loop $forever
      (drop (call $poll (i32.const 4096) (i32.const 4352) (i32.const 1) (i32.const 4480)))
      (br $forever))
    (i64.const 0)))
