package runtime

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// kvModule is the import module name of the KV host functions.
const kvModule = "gojinn_kv_v1"

// Bounds the host applies before asking the store.
const (
	kvMaxNamespace     = 63   // storage.ValidateName's longest name
	kvDefaultList      = 100  // list's page size when the guest passes <= 0
	kvMaxList          = 1000 // list's largest page
	kvFlagLinearizable = 1    // get's flags bit 0
)

// errKVNoStore is what every call answers on a node without a KV.
var errKVNoStore = fmt.Errorf("%w: KV is not available on this node (the runtime was started without a KV store)", ErrKVUnavailable)

// kvFunc is one host function: its name, signature and body.
type kvFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(ctx context.Context, a *kvArgs) int32
}

// Shorthands for kvFuncs.
const (
	kvI32 = api.ValueTypeI32
	kvI64 = api.ValueTypeI64
)

// kvFuncs is the gojinn_kv_v1 ABI; docs/guest-protocol.md describes it.
var kvFuncs = []kvFunc{
	{"get", []api.ValueType{kvI32, kvI32, kvI32, kvI32, kvI32, kvI32}, []api.ValueType{kvI32}, kvGet},
	{"put", []api.ValueType{kvI32, kvI32, kvI32, kvI32, kvI32, kvI32, kvI64, kvI64, kvI32}, []api.ValueType{kvI32}, kvPut},
	{"delete", []api.ValueType{kvI32, kvI32, kvI32, kvI32}, []api.ValueType{kvI32}, kvDelete},
	{"list", []api.ValueType{kvI32, kvI32, kvI32, kvI32, kvI32, kvI32, kvI32}, []api.ValueType{kvI32}, kvList},
	{"result_len", nil, []api.ValueType{kvI32}, nil},
	{"result_read", []api.ValueType{kvI32, kvI32}, []api.ValueType{kvI32}, nil},
}

// instantiateKV adds the gojinn_kv_v1 host module to rt.
func instantiateKV(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(kvModule)
	for _, f := range kvFuncs {
		var fn api.GoModuleFunc
		switch f.name {
		case "result_len":
			fn = kvResultLen
		case "result_read":
			fn = kvResultRead
		default:
			fn = kvHandler(f)
		}
		b.NewFunctionBuilder().WithGoModuleFunction(fn, f.params, f.results).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s: %w", kvModule, err)
	}
	return nil
}

// kvImportOK returns nil when a module may import name from gojinn_kv_v1
// with def's signature, else an ErrInvalidModule error saying why.
func kvImportOK(name string, def api.FunctionDefinition) error {
	for _, f := range kvFuncs {
		if f.name == name {
			if !sig(def, f.params, f.results) {
				return fmt.Errorf("%w: %s.%s has the wrong signature %v -> %v (want %v -> %v; see docs/guest-protocol.md)",
					ErrInvalidModule, kvModule, name, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(f.params), typeNames(f.results))
			}
			return nil
		}
	}
	return fmt.Errorf("%w: module imports %s.%s, which this node does not provide (it has get, put, delete, list, result_len and result_read)", ErrInvalidModule, kvModule, name)
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// kvArgs is what a KV host function reads its arguments through. Every
// guest pointer is bounds-checked: a range outside linear memory traps
// the guest (a panic wazero turns into an error of the call), never the
// host.
type kvArgs struct {
	fn    string
	call  *kvCall
	mem   api.Memory
	stack []uint64
}

// kvHandler wraps a KV function: it finds the invocation's state and puts
// the status on the stack.
func kvHandler(f kvFunc) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		a := &kvArgs{fn: f.name, call: kvCallFrom(ctx), mem: mod.Memory(), stack: stack}
		var st int32
		if a.call == nil {
			// Only reachable outside an invocation; there is nowhere to put
			// a message.
			st = kvUnavailable
		} else {
			var span trace.Span
			ctx, span = startSpan(ctx, "kv."+f.name, attribute.String("db.system.name", "gojinn_kv"), attribute.String("db.operation.name", f.name))
			var waited func()
			if g := a.call.guard; g != nil {
				// A KV call may wait on the network or on Raft: time
				// the guest's thread does not compute.
				waited = g.wait()
			}
			st = f.fn(ctx, a)
			if waited != nil {
				waited()
			}
			if span != nil {
				endKVSpan(span, st)
			}
		}
		stack[0] = api.EncodeI32(st)
	}
}

// u32 returns argument i as an unsigned 32-bit value.
func (a *kvArgs) u32(i int) uint32 { return api.DecodeU32(a.stack[i]) }

// i64 returns argument i as a signed 64-bit value.
func (a *kvArgs) i64(i int) int64 { return int64(a.stack[i]) }

// trap stops the guest with a message naming the function.
func (a *kvArgs) trap(format string, args ...any) {
	panic(fmt.Errorf("%s.%s: %s", kvModule, a.fn, fmt.Sprintf(format, args...)))
}

// bytes returns the n bytes at ptr, a view of guest memory; it traps when
// they fall outside linear memory.
func (a *kvArgs) bytes(what string, ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	if a.mem == nil {
		a.trap("%s: the module has no linear memory", what)
	}
	b, ok := a.mem.Read(ptr, n)
	if !ok {
		a.trap("%s (%d bytes at %#x) is outside linear memory (%d bytes)", what, n, ptr, a.mem.Size())
	}
	return b
}

// checkOut traps unless n bytes at ptr can be written.
func (a *kvArgs) checkOut(what string, ptr, n uint32) {
	a.bytes(what, ptr, n)
}

// putU64 writes v at ptr, which checkOut has validated.
func (a *kvArgs) putU64(ptr uint32, v uint64) {
	a.mem.WriteUint64Le(ptr, v)
}

// str reads the string argument at stack[i], stack[i+1]. A length over
// limit is refused with ErrKVInvalid before the pointer is looked at;
// otherwise a range outside linear memory traps.
func (a *kvArgs) str(what string, i int, limit int) (string, error) {
	ptr, n := a.u32(i), a.u32(i+1)
	if int64(n) > int64(limit) {
		return "", fmt.Errorf("%w: the %s is %d bytes, more than the limit of %d", ErrKVInvalid, what, n, limit)
	}
	return string(a.bytes(what, ptr, n)), nil
}

// access resolves the empty namespace to the function's own and checks
// that the function may use it.
func (a *kvArgs) access(ns string) (string, error) {
	c := a.call
	if ns == "" {
		ns = c.function
	}
	if err := c.kv.CheckAccess(c.function, ns); err != nil {
		return "", err
	}
	return ns, nil
}

// nsKey reads the namespace and key arguments (stack[0..3]) and checks
// access.
func (a *kvArgs) nsKey(maxKey int) (string, string, error) {
	ns, err := a.str("namespace", 0, kvMaxNamespace)
	if err != nil {
		return "", "", err
	}
	key, err := a.str("key", 2, maxKey)
	if err != nil {
		return "", "", err
	}
	if ns, err = a.access(ns); err != nil {
		return "", "", err
	}
	return ns, key, nil
}

// limits returns the store's key and value limits, or errKVNoStore.
func (a *kvArgs) limits() (int, int, error) {
	if a.call.kv == nil {
		return 0, 0, errKVNoStore
	}
	k, v := a.call.kv.Limits()
	return k, v, nil
}

// get(ns_ptr, ns_len, key_ptr, key_len, flags, version_ptr) -> status:
// >= 0 is the value's length (the value is the result), and the version
// is written at version_ptr as a little-endian u64.
func kvGet(ctx context.Context, a *kvArgs) int32 {
	c := a.call
	verPtr := a.u32(5)
	a.checkOut("version_ptr", verPtr, 8)
	maxKey, _, err := a.limits()
	if err != nil {
		return c.fail(err)
	}
	ns, key, err := a.nsKey(maxKey)
	if err != nil {
		return c.fail(err)
	}
	flags := a.u32(4)
	if flags&^kvFlagLinearizable != 0 {
		return c.fail(fmt.Errorf("%w: unknown get flags %#x (bit 0 is linearizable)", ErrKVInvalid, flags))
	}
	kctx, cancel := c.context(ctx)
	defer cancel()
	value, version, err := c.kv.Get(kctx, ns, key, flags&kvFlagLinearizable != 0)
	if err != nil {
		return c.fail(err)
	}
	if len(value) > math.MaxInt32 {
		return c.fail(fmt.Errorf("%w: the value is %d bytes", ErrKVTooLarge, len(value)))
	}
	a.putU64(verPtr, version)
	c.result = value
	return int32(len(value))
}

// put(ns_ptr, ns_len, key_ptr, key_len, val_ptr, val_len, ttl_ms i64,
// cas i64, version_ptr) -> status: 0, and the new version at version_ptr.
// cas is -1 (unconditional), 0 (create only) or the expected version; on
// a conflict the current version (0: absent) is written at version_ptr.
func kvPut(ctx context.Context, a *kvArgs) int32 {
	c := a.call
	verPtr := a.u32(8)
	a.checkOut("version_ptr", verPtr, 8)
	valPtr, valLen := a.u32(4), a.u32(5)
	maxKey, maxValue, err := a.limits()
	if err != nil {
		return c.fail(err)
	}
	if int64(valLen) > int64(maxValue) {
		return c.fail(fmt.Errorf("%w: the value is %d bytes, more than the limit of %d", ErrKVTooLarge, valLen, maxValue))
	}
	value := a.bytes("value", valPtr, valLen)
	ns, key, err := a.nsKey(maxKey)
	if err != nil {
		return c.fail(err)
	}
	ttlMS, cas := a.i64(6), a.i64(7)
	if ttlMS < 0 || ttlMS > math.MaxInt64/int64(time.Millisecond) {
		return c.fail(fmt.Errorf("%w: ttl %d ms must be 0 (never expires) or positive", ErrKVInvalid, ttlMS))
	}
	if cas < KVNoCAS {
		return c.fail(fmt.Errorf("%w: cas %d must be -1 (none), 0 (create only) or a version", ErrKVInvalid, cas))
	}
	// The guest's memory is only borrowed for the call.
	value = append([]byte(nil), value...)
	kctx, cancel := c.context(ctx)
	defer cancel()
	version, err := c.kv.Put(kctx, ns, key, value, time.Duration(ttlMS)*time.Millisecond, cas)
	if err != nil {
		st := c.fail(err)
		if st == kvConflict {
			a.putU64(verPtr, version)
		}
		return st
	}
	a.putU64(verPtr, version)
	c.result = c.scratch[:0]
	return kvOK
}

// delete(ns_ptr, ns_len, key_ptr, key_len) -> status: 0, also when the key
// did not exist.
func kvDelete(ctx context.Context, a *kvArgs) int32 {
	c := a.call
	maxKey, _, err := a.limits()
	if err != nil {
		return c.fail(err)
	}
	ns, key, err := a.nsKey(maxKey)
	if err != nil {
		return c.fail(err)
	}
	kctx, cancel := c.context(ctx)
	defer cancel()
	if err := c.kv.Delete(kctx, ns, key); err != nil {
		return c.fail(err)
	}
	c.result = c.scratch[:0]
	return kvOK
}

// list(ns_ptr, ns_len, prefix_ptr, prefix_len, cursor_ptr, cursor_len,
// limit) -> status: >= 0 is the result's length. The result is the next
// page's cursor and then every key, each followed by a NUL byte (keys
// hold no NUL): "next\0k1\0k2\0"; an empty cursor means the last page.
func kvList(ctx context.Context, a *kvArgs) int32 {
	c := a.call
	maxKey, _, err := a.limits()
	if err != nil {
		return c.fail(err)
	}
	nsArg, err := a.str("namespace", 0, kvMaxNamespace)
	if err != nil {
		return c.fail(err)
	}
	prefix, err := a.str("prefix", 2, maxKey)
	if err != nil {
		return c.fail(err)
	}
	cursor, err := a.str("cursor", 4, maxKey)
	if err != nil {
		return c.fail(err)
	}
	ns, err := a.access(nsArg)
	if err != nil {
		return c.fail(err)
	}
	limit := int(int32(a.u32(6)))
	switch {
	case limit <= 0:
		limit = kvDefaultList
	case limit > kvMaxList:
		limit = kvMaxList
	}
	kctx, cancel := c.context(ctx)
	defer cancel()
	keys, next, err := c.kv.List(kctx, ns, prefix, cursor, limit)
	if err != nil {
		return c.fail(err)
	}
	buf := append(c.scratch[:0], next...)
	buf = append(buf, 0)
	for _, k := range keys {
		buf = append(buf, k...)
		buf = append(buf, 0)
	}
	c.scratch, c.result = buf, buf
	if len(buf) > math.MaxInt32 {
		return c.fail(fmt.Errorf("%w: the listing is %d bytes", ErrKVTooLarge, len(buf)))
	}
	return int32(len(buf))
}

// result_len() -> i32: the length of the last call's result (a value, a
// listing or an error message); 0 before any call of this invocation.
func kvResultLen(ctx context.Context, _ api.Module, stack []uint64) {
	n := 0
	if c := kvCallFrom(ctx); c != nil {
		n = len(c.result)
	}
	stack[0] = api.EncodeI32(int32(n))
}

// result_read(ptr, len) -> i32: copies the first min(len, result length)
// bytes of the last call's result to ptr and returns how many it copied.
func kvResultRead(ctx context.Context, mod api.Module, stack []uint64) {
	a := &kvArgs{fn: "result_read", call: kvCallFrom(ctx), mem: mod.Memory(), stack: stack}
	ptr, n := a.u32(0), a.u32(1)
	a.checkOut("destination", ptr, n)
	var res []byte
	if a.call != nil {
		res = a.call.result
	}
	k := min(int(n), len(res))
	if k > 0 && !a.mem.Write(ptr, res[:k]) {
		a.trap("destination (%d bytes at %#x) is outside linear memory", k, ptr)
	}
	stack[0] = api.EncodeI32(int32(k))
}

// kvStatusNames name the gojinn_kv_v1 status codes for span attributes.
var kvStatusNames = map[int32]string{
	kvNotFound: "not_found", kvConflict: "conflict", kvForbidden: "forbidden", kvInvalid: "invalid",
	kvTooLarge: "too_large", kvQuota: "quota", kvUnavailable: "unavailable", kvInternal: "internal",
}

// endKVSpan ends a KV host call's span with its result: "ok" or the name
// of the status code. Keys, values and namespaces stay out of spans
// (they are the function's data); not_found and conflict are answers,
// not errors.
func endKVSpan(span trace.Span, st int32) {
	result := "ok"
	if st < 0 {
		result = kvStatusNames[st]
		if st != kvNotFound && st != kvConflict {
			span.SetStatus(codes.Error, result)
		}
	}
	span.SetAttributes(attribute.String("gojinn.kv.result", result))
	span.End()
}
