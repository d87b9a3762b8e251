;; Test guest for runtime tests: recurse. gojinn_v1_handle runs forever
;; without a loop: $fan calls itself twice down to depth 60, about 2^61
;; calls, and the stack never holds more than 61 frames, so neither a loop
;; check nor a stack overflow ends it. Only the checks at function entry
;; (wasmbin.InstrumentLoops) let the timeout and the CPU budget stop it.
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

  (func $fan (param $depth i32)
    (if (i32.lt_u (local.get $depth) (i32.const 60))
      (then
        (call $fan (i32.add (local.get $depth) (i32.const 1)))
        (call $fan (i32.add (local.get $depth) (i32.const 1))))))

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (call $fan (i32.const 0))
    (i64.const 0)))
