;; raw-wat: a Gojinn function in WebAssembly text, with no SDK, showing the
;; raw protocol of isolated mode. A WASI command receives the request as one
;; JSON document on stdin and answers with one JSON document on stdout:
;;   {"status":200,"headers":{"Content-Type":["text/plain"]},"body":"..."}
;; This guest reads all of stdin and reports how many bytes it got.
;; Build: wat2wasm main.wat -o raw-wat.wasm (Debian package wabt).
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Layout: 0-7 one iovec, 8-11 the byte count a WASI call returns,
  ;; 512 and 768 the constant parts of the response, 1000 downwards the
  ;; digits, 4096 onwards the read buffer.
  (data (i32.const 512) "{\"status\":200,\"headers\":{\"Content-Type\":[\"text/plain\"]},\"body\":\"raw WAT guest read ")
  (data (i32.const 768) " bytes of request JSON\\n\"}\0a")

  (func (export "_start")
    (local $total i32) (local $n i32) (local $p i32)
    ;; Read stdin to the end; errno != 0 or a zero-byte read ends the loop.
    (block $done
      (loop $read
        (i32.store (i32.const 0) (i32.const 4096))
        (i32.store (i32.const 4) (i32.const 32768))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $read)))
    (call $write (i32.const 512) (i32.const 83))
    ;; Decimal digits of $total, written backwards from 1000.
    (local.set $p (i32.const 1000))
    (loop $itoa
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $total) (i32.const 10))))
      (local.set $total (i32.div_u (local.get $total) (i32.const 10)))
      (br_if $itoa (local.get $total)))
    (call $write (local.get $p) (i32.sub (i32.const 1000) (local.get $p)))
    (call $write (i32.const 768) (i32.const 27)))

  ;; write sends len bytes at ptr to stdout.
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
