;; Test guest for runtime tests: header-budget. Answers with headers and a
;; body each at their limit: 16 fields "a" whose names and values add up to
;; 1 MiB (protocol.MaxResponseHeaderBytes), and a 100-byte body (the test's
;; MaxResponseBody).
(module
  (memory (export "memory") 20)
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

  ;; The response is built at 131072, after the request buffer.
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (local $p i32)
    (local $i i32)
    (i32.store (i32.const 131072) (i32.const 0x01534a47)) ;; "GJS\01"
    (local.set $p (i32.const 131076))
    (block $done
      (loop $l
        (br_if $done (i32.eq (local.get $i) (i32.const 16)))
        ;; tag 2, field length 65537 (uvarint 81 80 04), name length 1,
        ;; "a", then 65535 bytes of value.
        (i32.store8 (local.get $p) (i32.const 2))
        (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 0x81))
        (i32.store8 (i32.add (local.get $p) (i32.const 2)) (i32.const 0x80))
        (i32.store8 (i32.add (local.get $p) (i32.const 3)) (i32.const 0x04))
        (i32.store8 (i32.add (local.get $p) (i32.const 4)) (i32.const 1))
        (i32.store8 (i32.add (local.get $p) (i32.const 5)) (i32.const 0x61))
        (memory.fill (i32.add (local.get $p) (i32.const 6)) (i32.const 0x76) (i32.const 65535))
        (local.set $p (i32.add (local.get $p) (i32.const 65541)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    ;; The body: tag 3, length 100, 100 bytes.
    (i32.store8 (local.get $p) (i32.const 3))
    (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 100))
    (memory.fill (i32.add (local.get $p) (i32.const 2)) (i32.const 0x62) (i32.const 100))
    (local.set $p (i32.add (local.get $p) (i32.const 102)))
    (i64.or (i64.shl (i64.const 131072) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $p) (i32.const 131072))))))
