;; Test guest for runtime tests: bigmem.
(module
  ;; needs 512 pages (32 MiB) up front: loads only under a larger memory limit.
  (memory (export "memory") 512)
  (func (export "_start")))
