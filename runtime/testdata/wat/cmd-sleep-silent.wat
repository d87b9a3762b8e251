;; Test guest for runtime tests: cmd-sleep-silent, cmd-sleep-answer
;; without the answer: _start logs "running", sleeps 100 s once and
;; returns, having written nothing to stdout.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 2048) "running")
  (func (export "_start")
    (drop (call $log (i32.const 0) (i32.const 2048) (i32.const 7) (i32.const 0) (i32.const 0)))
    (i64.store (i32.const 4120) (i64.const 100000000000))
    (drop (call $poll (i32.const 4096) (i32.const 4352) (i32.const 1) (i32.const 4480)))))
