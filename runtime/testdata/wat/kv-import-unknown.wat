;; Test guest for runtime tests: a command importing something the node
;; must refuse at deploy (unknown).
(module
  (import "gojinn_kv_v1" "frobnicate" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
