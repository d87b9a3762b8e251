package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// logModule is the import module name of the structured log host function.
const logModule = "gojinn_log_v1"

// Status codes of gojinn_log_v1.log; docs/guest-protocol.md and
// sdk/go/log.go carry the same numbers.
const (
	logOK          int32 = 0  // recorded
	logTruncated   int32 = 1  // recorded, the message cut at MaxLogMessage
	logBadFields   int32 = -1 // recorded without fields: not a JSON object
	logBigFields   int32 = -2 // recorded without fields: over MaxLogFields
	logRateLimited int32 = -3 // dropped: the function's rate limit
	logNoCall      int32 = -4 // dropped: called outside an invocation
)

// logParams is log's signature: (level, msg_ptr, msg_len, fields_ptr,
// fields_len) -> status.
var (
	logParams  = []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}
	logResults = []api.ValueType{api.ValueTypeI32}
)

// instantiateLog adds the gojinn_log_v1 host module to rt.
func instantiateLog(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(logModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLog), logParams, logResults).Export("log").
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate %s: %w", logModule, err)
	}
	return nil
}

// logImportOK returns nil when a module may import name from
// gojinn_log_v1 with def's signature, else an ErrInvalidModule error.
func logImportOK(name string, def api.FunctionDefinition) error {
	if name != "log" {
		return fmt.Errorf("%w: module imports %s.%s, which this node does not provide (it has log)", ErrInvalidModule, logModule, name)
	}
	if !sig(def, logParams, logResults) {
		return fmt.Errorf("%w: %s.log has the wrong signature %v -> %v (want %v -> %v; see docs/guest-protocol.md)",
			ErrInvalidModule, logModule, typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(logParams), typeNames(logResults))
	}
	return nil
}

// logTrap stops the guest with a message naming the argument.
func logTrap(format string, args ...any) {
	panic(fmt.Errorf("%s.log: %s", logModule, fmt.Sprintf(format, args...)))
}

// logView returns the n bytes at ptr as a view of guest memory, without
// copying; a range outside linear memory traps.
func logView(mem api.Memory, what string, ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	if mem == nil {
		logTrap("%s: the module has no linear memory", what)
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		logTrap("%s (%d bytes at %#x) is outside linear memory (%d bytes)", what, n, ptr, mem.Size())
	}
	return b
}

// hostLog is log(level, msg_ptr, msg_len, fields_ptr, fields_len) -> status.
// Both ranges are bounds-checked (a bad one traps) before the rate limit
// is asked, so a bad pointer is found whether or not the line would be
// kept; at most MaxLogMessage and MaxLogFields bytes are copied.
func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	level := int32(api.DecodeU32(stack[0]))
	mem := mod.Memory()
	msg := logView(mem, "message", api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	fields := logView(mem, "fields", api.DecodeU32(stack[3]), api.DecodeU32(stack[4]))
	c := logCallFrom(ctx)
	if c == nil {
		stack[0] = api.EncodeI32(logNoCall)
		return
	}
	f := c.fn
	now := time.Now()
	if !f.admitLog(now) {
		stack[0] = api.EncodeI32(logRateLimited)
		return
	}
	rec := f.newRecord(now, c.requestID, c.traceID, LogSourceGuest, ClampLogLevel(level))
	status := logOK
	m, cut := capMessage(msg)
	rec.Message = logText(m) // the copy out of guest memory
	if cut {
		rec.Truncated, status = true, logTruncated
	}
	switch {
	case len(fields) == 0:
	case len(fields) > MaxLogFields:
		rec.Fields = fieldsError(fmt.Sprintf("the fields are %d bytes, more than the limit of %d; they were dropped", len(fields), MaxLogFields))
		rec.Truncated, status = true, logBigFields
	default:
		var buf bytes.Buffer
		buf.Grow(len(fields))
		if err := json.Compact(&buf, fields); err != nil {
			rec.Fields, status = fieldsError("the fields are not valid JSON ("+err.Error()+"); they were dropped"), logBadFields
		} else if buf.Len() == 0 || buf.Bytes()[0] != '{' {
			rec.Fields, status = fieldsError("the fields must be a JSON object; they were dropped"), logBadFields
		} else if !utf8.Valid(buf.Bytes()) {
			// Only strings can hold such bytes in valid JSON: U+FFFD
			// there keeps the fields valid JSON, as logText does for
			// the message.
			rec.Fields = bytes.ToValidUTF8(buf.Bytes(), []byte("\uFFFD"))
		} else {
			rec.Fields = buf.Bytes()
		}
	}
	f.emitLog(rec)
	stack[0] = api.EncodeI32(status)
}

// fieldsError is the fields object that replaces unusable ones.
func fieldsError(msg string) json.RawMessage {
	b, _ := json.Marshal(struct {
		FieldsError string `json:"fields_error"`
	}{msg}) // a struct of one string always encodes
	return b
}
