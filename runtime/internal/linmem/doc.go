// Package linmem provides wazero linear-memory allocators that enforce a per-instance limit and can snapshot and cheaply reset guest memory.
package linmem
