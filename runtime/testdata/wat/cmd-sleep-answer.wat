;; Test guest for runtime tests: cmd-sleep-answer, sleep-answer as a WASI
;; command: _start logs "running", sleeps 100 s once (poll_oneoff on a
;; clock), then writes a valid response, 200 "woke up after sleep", to
;; stdout. No loop: woken early by the host's stop, it still answers.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"status\":200,\"body\":\"woke up after sleep\"}")
  (data (i32.const 2048) "running")
  (func (export "_start")
    (drop (call $log (i32.const 0) (i32.const 2048) (i32.const 7) (i32.const 0) (i32.const 0)))
    (i64.store (i32.const 4120) (i64.const 100000000000))
    (drop (call $poll (i32.const 4096) (i32.const 4352) (i32.const 1) (i32.const 4480)))
    ;; One iovec at 0: the 43-byte response at 1024.
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 43))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
