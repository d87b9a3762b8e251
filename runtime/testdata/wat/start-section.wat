;; Test guest for runtime tests: start-section. A reactor with a wasm start
;; section (so the engine compiles it with wazero's own termination checks
;; instead of loop instrumentation) whose handler loops forever on requests
;; over 4096 bytes and answers smaller ones.
(module
  (memory (export "memory") 2)
  (global $started (mut i32) (i32.const 0))
  (data (i32.const 1024) "GJS\01\01\02\c8\01\02\17\0cContent-Typetext/plain\03\0dhello, wasm!\0a")
  (func $init (global.set $started (i32.const 1)))
  (start $init)

  ;; The request buffer is the second page; requests stay below 64 KiB.
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 65536))

  (func (export "gojinn_v1_handle") (param $n i32) (result i64)
    (if (i32.eqz (global.get $started)) (then unreachable)) ;; the start section ran
    (if (i32.gt_u (local.get $n) (i32.const 4096)) (then (loop $l (br $l))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 48))))
