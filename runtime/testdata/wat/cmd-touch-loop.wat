;; Test guest for runtime tests: cmd-touch-loop, touch-loop as a WASI
;; command: _start grows memory to 640 pages (40 MiB), logs "running",
;; then writes to every page over and over until it is stopped.
(module
  (import "gojinn_log_v1" "log" (func $log (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "running")
  (func (export "_start")
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
