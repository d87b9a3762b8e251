;; v2: the second version the Docker test deploys, so a node's answer tells
;; which version it serves. A WASI command in isolated mode: it ignores the
;; request on stdin and writes one JSON response on stdout.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0-7 one iovec, 8-11 the byte count fd_write returns, 64 the response.
  (data (i32.const 64) "{\"status\":200,\"headers\":{\"Content-Type\":[\"text/plain\"]},\"body\":\"docker test v2\\n\"}\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 83))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
