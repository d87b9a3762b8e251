package wasmbin

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Sentinel errors. Errors returned by this package wrap exactly one of them
// (test with errors.Is) and add a description of the problem.
var (
	// ErrMalformed reports that the input is not a well-formed WebAssembly
	// binary in a part this package decodes (header, section framing,
	// import, global, export and custom section names and, for
	// InstrumentLoops, the code section). The message names the offending
	// byte offset in the input.
	ErrMalformed = errors.New("wasmbin: malformed module")

	// ErrNameConflict reports that a name this package wants to give a new
	// export ("__gojinn_global_<index>", StopGlobalName) is already used by
	// another export.
	ErrNameConflict = errors.New("wasmbin: export name conflict")

	// ErrTooLarge reports that a rewritten section, function body or count
	// would exceed the 32-bit limits of the binary format.
	ErrTooLarge = errors.New("wasmbin: module too large")

	// ErrUnsupportedInstruction reports that a function body uses an
	// instruction (or an encoding of one) that InstrumentLoops does not
	// decode, so it cannot find the loops in it reliably. Callers should
	// fall back to the runtime's own termination checks (wazero's
	// RuntimeConfig.WithCloseOnContextDone) for such a module.
	ErrUnsupportedInstruction = errors.New("wasmbin: unsupported instruction")

	// ErrLimit reports that a module, though possibly well-formed, declares
	// more of something (types, functions, locals, table entries, value
	// slots...) than CheckLimits allows. The message names the limit and
	// the byte offset.
	ErrLimit = errors.New("wasmbin: module exceeds a limit")
)

// GlobalExportPrefix is the prefix of the export names given to mutable
// globals that were not already exported; the global index follows it.
const GlobalExportPrefix = "__gojinn_global_"

// GlobalExport names one mutable global that the rewritten module exports.
type GlobalExport struct {
	// Index is the global's index in the module's global index space,
	// where imported globals come first.
	Index uint32
	// Name is the export name under which the host can reach the global.
	Name string
}

// ExportMutableGlobals returns a copy of the module in which every mutable
// global defined by the module (not imported) is exported, together with the
// export name of each such global in increasing index order.
//
// Globals already exported keep their existing (first) export name and no
// duplicate export is added. New exports are named "__gojinn_global_<index>"
// where index is the global index in the module's global index space
// (imported globals come first). They are appended to the export section,
// which is created right after the global section when the module has none.
// Every other byte is copied unchanged. The input is never modified, and the
// result is a fresh slice even when nothing needed to change.
//
// The function is meant for untrusted input: it validates everything it
// decodes and returns an error wrapping ErrMalformed, ErrNameConflict or
// ErrTooLarge instead of panicking. It does not validate the parts of the
// module it does not decode (types, code, data...); compiling the result
// with a WebAssembly runtime does that.
func ExportMutableGlobals(wasm []byte) ([]byte, []GlobalExport, error) {
	m, err := parse(wasm)
	if err != nil {
		return nil, nil, err
	}
	var all []GlobalExport
	var entries []byte
	added := 0
	for _, idx := range m.mutable {
		if name, ok := m.globalNames[idx]; ok {
			all = append(all, GlobalExport{Index: idx, Name: name})
			continue
		}
		name := GlobalExportPrefix + strconv.FormatUint(uint64(idx), 10)
		if _, taken := m.exportNames[name]; taken {
			return nil, nil, fmt.Errorf("%w: %q is already exported and is not global %d", ErrNameConflict, name, idx)
		}
		all = append(all, GlobalExport{Index: idx, Name: name})
		entries = appendU32(entries, uint32(len(name)))
		entries = append(entries, name...)
		entries = append(entries, externGlobal)
		entries = appendU32(entries, idx)
		added++
	}
	if added == 0 {
		return bytes.Clone(wasm), all, nil
	}

	sec, head, tail, err := m.exportSection(wasm, entries, added)
	if err != nil {
		return nil, nil, err
	}
	out := make([]byte, 0, len(wasm)-(tail-head)+len(sec))
	out = append(out, wasm[:head]...)
	out = append(out, sec...)
	out = append(out, wasm[tail:]...)
	return out, all, nil
}

// exportSection returns the encoded export section (id, size and payload)
// listing the module's exports followed by entries, which hold added
// encoded export entries, and the range wasm[head:tail] it replaces: the
// old export section, or the empty range at m.insertAt when there is none.
func (m *module) exportSection(wasm, entries []byte, added int) (sec []byte, head, tail int, err error) {
	count := uint64(m.exportCount) + uint64(added)
	if count > math.MaxUint32 {
		return nil, 0, 0, fmt.Errorf("%w: %d exports", ErrTooLarge, count)
	}
	var payload []byte
	head, tail = m.insertAt, m.insertAt
	if m.hasExport {
		old := wasm[m.exportEntries:m.exportEnd]
		payload = make([]byte, 0, 5+len(old)+len(entries))
		payload = appendU32(payload, uint32(count))
		payload = append(payload, old...)
		head, tail = m.exportStart, m.exportEnd
	} else {
		payload = appendU32(make([]byte, 0, 5+len(entries)), uint32(count))
	}
	payload = append(payload, entries...)
	sec, err = appendSection(nil, secExport, payload, "export")
	if err != nil {
		return nil, 0, 0, err
	}
	return sec, head, tail, nil
}

// appendSection appends a section with the given id and payload; what
// names the section in the error returned when the payload is too large.
func appendSection(b []byte, id byte, payload []byte, what string) ([]byte, error) {
	if uint64(len(payload)) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %s section of %d bytes", ErrTooLarge, what, len(payload))
	}
	if b == nil {
		b = make([]byte, 0, 6+len(payload))
	}
	b = append(b, id)
	b = appendU32(b, uint32(len(payload)))
	return append(b, payload...), nil
}

// appendS32 appends the shortest signed LEB128 encoding of v.
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendU32 appends the shortest unsigned LEB128 encoding of v.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
