//go:build wasip1

package main

import "unsafe"

// Raw imports with integer pointers, so the guest can pass any address.

//go:wasmimport gojinn_kv_v1 get
func rawGet(nsPtr, nsLen, keyPtr, keyLen, flags, versionPtr uint32) int32

//go:wasmimport gojinn_kv_v1 put
func rawPut(nsPtr, nsLen, keyPtr, keyLen, valPtr, valLen uint32, ttlMS, cas int64, versionPtr uint32) int32

//go:wasmimport gojinn_kv_v1 list
func rawList(nsPtr, nsLen, prefixPtr, prefixLen, cursorPtr, cursorLen uint32, limit int32) int32

//go:wasmimport gojinn_kv_v1 result_len
func rawResultLen() int32

//go:wasmimport gojinn_kv_v1 result_read
func rawResultRead(ptr, n uint32) int32

// scratch is valid memory for the arguments that are not under test.
var scratch [64]byte

func addr() uint32 { return uint32(uintptr(unsafe.Pointer(&scratch[0]))) }

const far = 0xFFFF_FF00 // beyond any test guest's memory

// abuse makes the call named what; the ones that trap never return.
func abuse(what string) int32 {
	ok := addr()
	scratch[0] = 'k'
	switch what {
	case "key": // a key outside memory
		return rawGet(0, 0, far, 16, 0, ok+8)
	case "namespace":
		return rawGet(far, 8, ok, 1, 0, ok+8)
	case "version": // the version out-parameter outside memory
		return rawGet(0, 0, ok, 1, 0, far)
	case "value":
		return rawPut(0, 0, ok, 1, far, 16, 0, -1, ok+8)
	case "put-version":
		return rawPut(0, 0, ok, 1, ok, 1, 0, -1, 0xFFFF_FFFC)
	case "prefix":
		return rawList(0, 0, far, 4, 0, 0, 10)
	case "read": // result_read's destination outside memory
		rawGet(0, 0, ok, 1, 0, ok+8)
		return rawResultRead(far, 64)
	case "wrap": // a range that wraps around the address space
		return rawGet(0, 0, 0xFFFF_FFF0, 32, 0, ok+8)
	case "huge-key": // too long: an error code, before the pointer is used
		return rawGet(0, 0, far, 0xFFFF_FFFF, 0, ok+8)
	case "bad-flags":
		return rawGet(0, 0, ok, 1, 6, ok+8)
	case "bad-ttl":
		return rawPut(0, 0, ok, 1, ok, 1, -5, -1, ok+8)
	case "bad-cas":
		return rawPut(0, 0, ok, 1, ok, 1, 0, -7, ok+8)
	case "result-len": // what the previous request left: must be nothing
		return rawResultLen()
	}
	return 1 << 30
}
