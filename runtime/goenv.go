package runtime

import "strconv"

// hostSets reports whether the host gives f's instances the Go runtime
// setting name: only to Go guests, and never over the function's own env.
func (f *Function) hostSets(name string) bool {
	_, set := f.spec.Env[name]
	return f.goGuest && !set
}

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
	if !f.hostSets(goMemLimitEnv) {
		return "", false
	}
	limit := m.linearLimit(f.spec.Limits.MemoryBytes)
	if limit <= m.minMem {
		return "", false
	}
	room := limit - m.minMem
	return strconv.FormatUint(room-room/8, 10), true
}

// heapReserveEnv tells the Go SDK how much heap to reserve before its
// snapshot (sdk/go, reserveHeap).
const heapReserveEnv = "GOJINN_HEAP_RESERVE"

// heapReserveEnv returns the GOJINN_HEAP_RESERVE a new reset instance of
// f gets: none for non-Go guests, for a function whose environment sets it
// (the operator's value, fixed), or before any request outgrew a snapshot.
func (f *Function) heapReserveEnv() (uint64, bool) {
	if !f.hostSets(heapReserveEnv) {
		return 0, false
	}
	r := f.heapReserve.Load()
	return r, r > 0
}

// outgrew records that a request grew the memory of in, a reset
// instance, which is retired for it: the request needed in's own reserve
// plus that growth. New instances of a Go guest then reserve that much
// heap (rounded up to 1 MiB, at most half the room the memory limit,
// less the tables, leaves above a snapshot without reserve) before their
// snapshot, so that such requests fit in the snapshot's free heap and the
// instances are reused. The reserve only grows; it is logged when it does.
func (f *Function) outgrew(in *instance) {
	if !f.hostSets(heapReserveEnv) {
		return
	}
	const mib = 1 << 20
	need := (in.heapReserve + in.mem.grownBy() + mib - 1) / mib * mib
	snap := uint64(in.mem.snapLen) - min(uint64(in.mem.snapLen), in.heapReserve)
	if limit := in.mem.limit; limit > snap {
		need = min(need, (limit-snap)/2)
	}
	for {
		old := f.heapReserve.Load()
		if need <= old {
			return
		}
		if f.heapReserve.CompareAndSwap(old, need) {
			f.engine.log.Info("a request outgrew the instance snapshot's free memory; new instances reserve more heap",
				"function", f.spec.Name, "version", f.spec.Version, "heap_reserve_bytes", need)
			return
		}
	}
}
