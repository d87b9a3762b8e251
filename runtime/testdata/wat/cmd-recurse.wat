;; Test guest for runtime tests: cmd-recurse, recurse.wat as a WASI
;; command: about 2^61 calls without a loop, in _start.
(module
  (memory (export "memory") 1)
  (func $fan (param $depth i32)
    (if (i32.lt_u (local.get $depth) (i32.const 60))
      (then
        (call $fan (i32.add (local.get $depth) (i32.const 1)))
        (call $fan (i32.add (local.get $depth) (i32.const 1))))))
  (func (export "_start") (call $fan (i32.const 0))))
