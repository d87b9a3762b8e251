;; Test guest for runtime tests: grow-refused-then-trap. The second byte of
;; the request's URI picks what gojinn_v1_handle does, so that one pooled
;; instance (reset or not) can do each in turn:
;;   /grow      asks for 2 GiB more memory, is refused (-1), handles the
;;              refusal as C and Rust guests do, and answers 200 "ok";
;;   /trap      traps (unreachable) without asking for memory;
;;   /xgrowtrap asks, is refused, and traps.
(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "GJS\01\03\02ok")
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

  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (local $c i32)
    ;; The request at 65536: the 4-byte magic, the method field (tag 1 at
    ;; 65540, its one-byte length at 65541, the method), then the URI field
    ;; (tag 2, one-byte length, the URI): the URI's second byte is at
    ;; 65536 + 9 + the method's length.
    (local.set $c (i32.load8_u (i32.add (i32.const 65545) (i32.load8_u (i32.const 65541)))))
    ;; 't' (/trap) asks for nothing; the others ask for 32768 pages.
    (if (i32.ne (local.get $c) (i32.const 0x74))
      (then (if (i32.ne (memory.grow (i32.const 32768)) (i32.const -1)) (then unreachable))))
    ;; Only 'g' (/grow) answers.
    (if (i32.ne (local.get $c) (i32.const 0x67)) (then unreachable))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8))))
