package runtime

import "strconv"

// goMemLimitEnv is the environment variable through which the Go runtime
// learns its memory limit (runtime/debug.SetMemoryLimit).
const goMemLimitEnv = "GOMEMLIMIT"

// goMemLimit returns the GOMEMLIMIT a Go guest of f gets when the
// function's environment does not set one: seven eighths of the linear
// memory its limit leaves above the module's initial memory (the Go
// linker sizes that to the program's data). Go's collector paces itself
// on the live heap alone (GOGC) and knows nothing of the sandbox: a guest
// keeping half its memory limit live would grow its heap toward twice
// that and fail at the limit with garbage left to collect. Told the
// limit, the collector works harder as the heap nears it instead; the
// eighth left over covers the overshoot a soft limit allows and the
// runtime's own growth. ok is false for non-Go guests, for a function
// whose environment sets GOMEMLIMIT (the operator's value wins, "off"
// included), and when the limit leaves no room above the initial memory.
func (f *Function) goMemLimit(m *module) (v string, ok bool) {
	if !f.goGuest {
		return "", false
	}
	if _, set := f.spec.Env[goMemLimitEnv]; set {
		return "", false
	}
	limit := f.spec.Limits.MemoryBytes
	if limit <= m.minMem {
		return "", false
	}
	room := limit - m.minMem
	return strconv.FormatUint(room-room/8, 10), true
}
