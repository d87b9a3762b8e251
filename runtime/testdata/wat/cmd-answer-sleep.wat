;; Test guest for runtime tests: cmd-answer-sleep, cmd-sleep-answer in the
;; other order: _start writes a valid response, 200 "answered before
;; sleep", to stdout, logs "running", sleeps 100 s once and returns. What
;; a stopped command wrote must not become its response.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"status\":200,\"body\":\"answered before sleep\"}")
  (data (i32.const 2048) "running")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 45))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $log (i32.const 0) (i32.const 2048) (i32.const 7) (i32.const 0) (i32.const 0)))
    (i64.store (i32.const 4120) (i64.const 100000000000))
    (drop (call $poll (i32.const 4096) (i32.const 4352) (i32.const 1) (i32.const 4480)))))
