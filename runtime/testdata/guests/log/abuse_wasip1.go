//go:build wasip1

package main

import "unsafe"

// A raw import with integer pointers, so the guest can pass any address.

//go:wasmimport gojinn_log_v1 log
func rawLog(level int32, msgPtr, msgLen, fieldsPtr, fieldsLen uint32) int32

// scratch is valid memory for the arguments that are not under test.
var scratch = [...]byte{'h', 'i', '{', '"', 'a', '"', ':', '1', '}', '[', ']', '{'}

func addr() uint32 { return uint32(uintptr(unsafe.Pointer(&scratch[0]))) }

const far = 0xFFFF_FF00 // beyond any test guest's memory

// abuse makes the call named what and returns its status; the ones that
// trap never return.
func abuse(what string) int32 {
	ok := addr()
	switch what {
	case "message": // a message outside memory
		return rawLog(0, far, 16, 0, 0)
	case "fields":
		return rawLog(0, ok, 2, far, 8)
	case "wrap": // a range that wraps around the address space
		return rawLog(0, 0xFFFF_FFF0, 32, 0, 0)
	case "huge-fields": // the whole range is checked, then it is refused
		return rawLog(0, ok, 2, 0, 20000)
	case "not-object":
		return rawLog(0, ok, 2, ok+9, 2)
	case "bad-json":
		return rawLog(0, ok, 2, ok+11, 1)
	case "object":
		return rawLog(0, ok, 2, ok+2, 7)
	case "level-high":
		return rawLog(1000, ok, 2, 0, 0)
	case "level-low":
		return rawLog(-1000, ok, 2, 0, 0)
	}
	return 1 << 30
}
