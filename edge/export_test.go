package edge

// TraceIDForTest exposes traceID to the external tests.
var TraceIDForTest = traceID

// RaceEnabled says whether the test binary was built with -race.
const RaceEnabled = raceOn

// BodyMemoryUsed is what the handler's requests hold of its body budget.
func BodyMemoryUsed(h *Handler) int64 { return h.bodyMemory().used.Load() }
