;; Test guest for runtime tests: a command importing gojinn_log_v1.log
;; with the wrong signature, which the node must refuse at deploy.
(module
  (import "gojinn_log_v1" "log" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
