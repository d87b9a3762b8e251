// Package protocol defines Gojinn guest protocol v1: the request and response
// a function sees, their JSON form (WASI command guests, stdin/stdout) and
// their binary wire form (pooled reactor guests, through linear memory).
//
// The package is pure standard library so both the host and guests compiled
// with GOOS=wasip1 import it. docs/guest-protocol.md is the normative text.
package protocol
