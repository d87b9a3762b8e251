//go:build wasip1

package gojinn

import "unsafe"

// The gojinn_kv_v1 host functions (docs/guest-protocol.md, "KV"). Strings
// and byte slices are passed as address and length without copying; the
// host copies what it keeps before it returns.

//go:wasmimport gojinn_kv_v1 get
//go:noescape
func kvGetImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32, flags uint32, version unsafe.Pointer) int32

//go:wasmimport gojinn_kv_v1 put
//go:noescape
func kvPutImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32, valPtr unsafe.Pointer, valLen uint32, ttlMS int64, cas int64, version unsafe.Pointer) int32

//go:wasmimport gojinn_kv_v1 delete
//go:noescape
func kvDeleteImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32) int32

//go:wasmimport gojinn_kv_v1 list
//go:noescape
func kvListImport(nsPtr unsafe.Pointer, nsLen uint32, prefixPtr unsafe.Pointer, prefixLen uint32, cursorPtr unsafe.Pointer, cursorLen uint32, limit int32) int32

//go:wasmimport gojinn_kv_v1 result_len
func kvResultLenImport() int32

//go:wasmimport gojinn_kv_v1 result_read
//go:noescape
func kvResultReadImport(ptr unsafe.Pointer, n uint32) int32

func strPtr(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func bytesPtr(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

func hostGet(ns, key string, flags uint32, version *uint64) int32 {
	np, nl := strPtr(ns)
	kp, kl := strPtr(key)
	return kvGetImport(np, nl, kp, kl, flags, unsafe.Pointer(version))
}

func hostPut(ns, key string, value []byte, ttlMS, cas int64, version *uint64) int32 {
	np, nl := strPtr(ns)
	kp, kl := strPtr(key)
	vp, vl := bytesPtr(value)
	return kvPutImport(np, nl, kp, kl, vp, vl, ttlMS, cas, unsafe.Pointer(version))
}

func hostDelete(ns, key string) int32 {
	np, nl := strPtr(ns)
	kp, kl := strPtr(key)
	return kvDeleteImport(np, nl, kp, kl)
}

func hostList(ns, prefix, cursor string, limit int32) int32 {
	np, nl := strPtr(ns)
	pp, pl := strPtr(prefix)
	cp, cl := strPtr(cursor)
	return kvListImport(np, nl, pp, pl, cp, cl, limit)
}

func hostResultLen() int32 { return kvResultLenImport() }

func hostResultRead(dst []byte) int32 {
	p, n := bytesPtr(dst)
	return kvResultReadImport(p, n)
}
