;; Test guest for runtime tests: a command importing a function
;; gojinn_log_v1 does not have, which the node must refuse at deploy.
(module
  (import "gojinn_log_v1" "flush" (func (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
