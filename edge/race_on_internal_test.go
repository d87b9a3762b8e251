//go:build race

package edge

// raceOn says whether the test binary was built with -race.
const raceOn = true
