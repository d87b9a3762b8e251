;; Test guest for runtime tests: cmd-header-flood. A WASI command whose
;; JSON response has 10001 header fields, one over
;; protocol.MaxResponseHeaderFields: {"headers":{"a":["b","b",...,"b"]}}.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{\22headers\22:{\22a\22:[")
  (func (export "_start")
    (local $p i32)
    (local $n i32)
    (local.set $p (i32.const 81)) ;; after the 17-byte prefix at 64
    (local.set $n (i32.const 10001))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $p) (i32.const 0x22))                     ;; "
        (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 0x62)) ;; b
        (i32.store8 (i32.add (local.get $p) (i32.const 2)) (i32.const 0x22)) ;; "
        (i32.store8 (i32.add (local.get $p) (i32.const 3)) (i32.const 0x2c)) ;; ,
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    ;; Replace the last comma and close the list and the objects.
    (i32.store8 (i32.sub (local.get $p) (i32.const 1)) (i32.const 0x5d)) ;; ]
    (i32.store8 (local.get $p) (i32.const 0x7d))                         ;; }
    (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 0x7d)) ;; }
    (local.set $p (i32.add (local.get $p) (i32.const 2)))
    ;; One iovec at 0: the response from 64 to $p.
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.sub (local.get $p) (i32.const 64)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
