;; Test guest for runtime tests: calls gojinn_log_v1.log eight times with
;; fixed arguments and answers with the eight statuses as the body bytes.
(module
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The response: status 200, an 8-byte body at 1034 that handle fills.
  (data (i32.const 1024) "GJS\01\01\02\c8\01\03\08")
  (data (i32.const 2048) "debug line")
  (data (i32.const 2064) "{\"k\": 1}")
  (data (i32.const 2080) "info")
  (data (i32.const 2096) "[1,2]")
  (data (i32.const 2112) "{bad")
  (data (i32.const 2128) "warn")
  (data (i32.const 2144) "error")
  (data (i32.const 2160) "high")
  (data (i32.const 2176) "low")
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

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    ;; debug with fields: 0
    (i32.store8 (i32.const 1034) (call $log (i32.const -4) (i32.const 2048) (i32.const 10) (i32.const 2064) (i32.const 8)))
    ;; info without fields: 0
    (i32.store8 (i32.const 1035) (call $log (i32.const 0) (i32.const 2080) (i32.const 4) (i32.const 0) (i32.const 0)))
    ;; fields not an object: -1
    (i32.store8 (i32.const 1036) (call $log (i32.const 4) (i32.const 2128) (i32.const 4) (i32.const 2096) (i32.const 5)))
    ;; fields not JSON: -1
    (i32.store8 (i32.const 1037) (call $log (i32.const 8) (i32.const 2144) (i32.const 5) (i32.const 2112) (i32.const 4)))
    ;; levels out of range clamp: 0
    (i32.store8 (i32.const 1038) (call $log (i32.const 100) (i32.const 2160) (i32.const 4) (i32.const 0) (i32.const 0)))
    (i32.store8 (i32.const 1039) (call $log (i32.const -100) (i32.const 2176) (i32.const 3) (i32.const 0) (i32.const 0)))
    ;; a 10000-byte message is cut to 8 KiB: 1
    (i32.store8 (i32.const 1040) (call $log (i32.const 2) (i32.const 4096) (i32.const 10000) (i32.const 0) (i32.const 0)))
    ;; 20000 bytes of fields are dropped: -2
    (i32.store8 (i32.const 1041) (call $log (i32.const 0) (i32.const 2080) (i32.const 4) (i32.const 16384) (i32.const 20000)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 18))))
