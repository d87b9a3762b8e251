package edge

// TraceIDForTest exposes traceID to the external tests.
var TraceIDForTest = traceID

// RaceEnabled says whether the test binary was built with -race.
const RaceEnabled = raceOn
