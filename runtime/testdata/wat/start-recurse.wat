;; Test guest for runtime tests: start-recurse. start-section.wat with a
;; handler that, on requests over 4096 bytes, runs without a loop: $fan
;; calls itself twice down to depth 60 (about 2^61 calls on a stack of 61
;; frames). The start section puts the module on the fallback runtime,
;; whose own checks (wazero's, at loop headers) miss it; the
;; instrumentation the module keeps there stops it.
(module
  (memory (export "memory") 2)
  (global $started (mut i32) (i32.const 0))
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (func $init (global.set $started (i32.const 1)))
  (start $init)

  ;; The request buffer is the second page; requests stay below 64 KiB.
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 65536))

  (func $fan (param $depth i32)
    (if (i32.lt_u (local.get $depth) (i32.const 60))
      (then
        (call $fan (i32.add (local.get $depth) (i32.const 1)))
        (call $fan (i32.add (local.get $depth) (i32.const 1))))))

  (func (export "gojinn_v1_handle") (param $n i32) (result i64)
    (if (i32.eqz (global.get $started)) (then unreachable)) ;; the start section ran
    (if (i32.gt_u (local.get $n) (i32.const 4096)) (then (call $fan (i32.const 0))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
