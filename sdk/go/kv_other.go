//go:build !wasip1

package gojinn

// Outside a wasip1 guest there is no node to ask: every KV call fails with
// ErrKVUnavailable, so packages using the SDK still build and vet on the
// host.

const kvHostMessage = "the KV host functions exist only in a guest built with GOOS=wasip1 GOARCH=wasm"

func hostGet(string, string, uint32, *uint64) int32               { return kvUnavailable }
func hostPut(string, string, []byte, int64, int64, *uint64) int32 { return kvUnavailable }
func hostDelete(string, string) int32                             { return kvUnavailable }
func hostList(string, string, string, int32) int32                { return kvUnavailable }
func hostResultLen() int32                                        { return int32(len(kvHostMessage)) }
func hostResultRead(dst []byte) int32                             { return int32(copy(dst, kvHostMessage)) }
