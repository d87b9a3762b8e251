;; Test guest for runtime tests: touch-loop. Its handler grows memory to
;; 640 pages (40 MiB), logs "running", then writes to every page over and
;; over until it is stopped: a guest whose memory must stay mapped while
;; it runs (TestEngineCloseStopsRunningGuests).
(module
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "running")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (call $touch)
    (i64.const 0))
  (func $touch
    (local $p i32)
    (drop (memory.grow (i32.sub (i32.const 640) (memory.size))))
    (drop (call $log (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 0) (i32.const 0)))
    (loop $forever
      (local.set $p (i32.const 0))
      (loop $pages
        (i32.store (i32.shl (local.get $p) (i32.const 16)) (local.get $p))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $pages (i32.lt_u (local.get $p) (i32.const 640))))
      (br $forever))))
