;; Test guest for runtime tests: header-flood. Answers with 10000 header
;; fields "a: b" (protocol.MaxResponseHeaderFields) when the request's URI
;; is /at, and with one more for any other URI such as /over.
(module
  (memory (export "memory") 2)
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

  ;; The response is built at 0: the magic, then n fields of 5 bytes each
  ;; (tag 2, length 3, name length 1, "a", "b"), at most 50009 bytes, below
  ;; the request buffer.
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (local $n i32)
    (local $p i32)
    (local.set $n (i32.const 10001))
    ;; The URI's second byte (see grow-refused-then-trap.wat): 'a' is /at.
    (if (i32.eq (i32.load8_u (i32.add (i32.const 65545) (i32.load8_u (i32.const 65541)))) (i32.const 0x61))
      (then (local.set $n (i32.const 10000))))
    (i32.store (i32.const 0) (i32.const 0x01534a47)) ;; "GJS\01"
    (local.set $p (i32.const 4))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $p) (i32.const 2))
        (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 3))
        (i32.store8 (i32.add (local.get $p) (i32.const 2)) (i32.const 1))
        (i32.store8 (i32.add (local.get $p) (i32.const 3)) (i32.const 0x61))
        (i32.store8 (i32.add (local.get $p) (i32.const 4)) (i32.const 0x62))
        (local.set $p (i32.add (local.get $p) (i32.const 5)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i64.extend_i32_u (local.get $p))))
