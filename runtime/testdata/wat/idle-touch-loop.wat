;; Test guest for runtime tests: idle-touch-loop. Its requests answer with
;; an empty 200; its gojinn_v1_idle grows memory to 640 pages (40 MiB),
;; then writes to every page over and over until it is stopped.
(module
  (memory (export "memory") 2)
  (data (i32.const 1024) "GJS\01\01\02\c8\01")
  (func (export "gojinn_v1_reserve") (param i32) (result i32) (i32.const 8192))
  (func (export "gojinn_v1_handle") (param i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 8)))
  (func (export "gojinn_v1_idle")
    (local $p i32)
    (drop (memory.grow (i32.sub (i32.const 640) (memory.size))))
    (loop $forever
      (local.set $p (i32.const 0))
      (loop $pages
        (i32.store (i32.shl (local.get $p) (i32.const 16)) (local.get $p))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $pages (i32.lt_u (local.get $p) (i32.const 640))))
      (br $forever))))
