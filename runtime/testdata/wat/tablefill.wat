;; Test guest for runtime tests: tablefill. bulkfill for tables:
;; gojinn_v1_handle fills all 8,000,000 entries of its table (64 MB in
;; wazero, 8 bytes an entry) over and over, with one table.fill per loop
;; iteration. An iteration takes milliseconds, so a yield to Go every
;; YieldInterval iterations would leave the Go runtime without its P for
;; seconds. wasmbin.InstrumentLoops charges table.fill by the entries it
;; writes, so the guest yields about once per iteration and the timeout
;; stops it on time.
(module
  (memory (export "memory") 1)
  (table $t 8000000 funcref)
  (func (export "gojinn_v1_reserve") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (i32.add (i32.const 65536) (local.get $n)) (i32.const 65535)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const 65536))

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (loop $forever
      (table.fill $t (i32.const 0) (ref.null func) (i32.const 8000000))
      (br $forever))
    (i64.const 0)))
