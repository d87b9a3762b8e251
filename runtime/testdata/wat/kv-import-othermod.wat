;; Test guest for runtime tests: a command importing something the node
;; must refuse at deploy (othermod).
(module
  (import "env" "now" (func (result i64)))
  (memory (export "memory") 1)
  (func (export "_start")))
