//go:build wasip1

package gojinn

import "unsafe"

// The gojinn_log_v1 host function (docs/guest-protocol.md, "Logs"). The
// host copies the message and fields before it returns.

//go:wasmimport gojinn_log_v1 log
//go:noescape
func logImport(level int32, msgPtr unsafe.Pointer, msgLen uint32, fieldsPtr unsafe.Pointer, fieldsLen uint32) int32

func hostLog(level int32, msg string, fields []byte) int32 {
	mp, ml := strPtr(msg)
	fp, fl := bytesPtr(fields)
	return logImport(level, mp, ml, fp, fl)
}
