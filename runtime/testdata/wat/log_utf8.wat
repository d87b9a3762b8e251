;; Test guest for runtime tests: logs one line whose message and fields
;; hold bytes that are not UTF-8, writes such a line to stdout, and
;; answers with the log call's status as the body.
(module
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The response: status 200, a 1-byte body at 1034 that handle fills.
  (data (i32.const 1024) "GJS\01\01\02\c8\01\03\01")
  ;; "bad \ff\fe name" (11 bytes)
  (data (i32.const 2048) "bad \ff\fe name")
  ;; {"user":"a\ffb","ok":"\c3\a9"} (24 bytes: one invalid byte, one valid é)
  (data (i32.const 2080) "{\"user\":\"a\ffb\",\"ok\":\"\c3\a9\"}")
  ;; "out \ff\n" (6 bytes) and its iovec at 2128
  (data (i32.const 2112) "out \ff\n")
  (data (i32.const 2128) "\40\08\00\00\06\00\00\00")
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i32.store8 (i32.const 1034) (call $log (i32.const 0) (i32.const 2048) (i32.const 11) (i32.const 2080) (i32.const 24)))
    (drop (call $fd_write (i32.const 1) (i32.const 2128) (i32.const 1) (i32.const 2144)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 11))))
