;; Test guest for runtime tests: bulkfill. gojinn_v1_handle grows memory to
;; 1000 pages (62.5 MiB) and then fills all of it but the first page, over
;; and over, with one memory.fill per loop iteration. An iteration takes
;; milliseconds, not nanoseconds, so a yield to Go every YieldInterval
;; iterations would leave the Go runtime without its P for seconds (a
;; stop-the-world of the garbage collector, and with it the timer that
;; stops the guest, would wait that long). wasmbin.InstrumentLoops charges
;; memory.fill by the bytes it touches, so the guest yields about once per
;; iteration and the timeout stops it on time.
(module
  (memory (export "memory") 1)
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (local $v i32)
    (if (i32.eq (memory.grow (i32.sub (i32.const 1000) (memory.size))) (i32.const -1))
      (then unreachable))
    (loop $forever
      (memory.fill (i32.const 65536) (local.get $v) (i32.const 65470464)) ;; 999 pages
      (local.set $v (i32.add (local.get $v) (i32.const 1)))
      (br $forever))
    (i64.const 0)))
