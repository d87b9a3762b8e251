;; Test guest for runtime tests: cmd-loop.
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
