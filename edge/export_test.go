package edge

// TraceIDForTest exposes traceID to the external tests.
var TraceIDForTest = traceID
