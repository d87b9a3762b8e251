//go:build !race

package runtime

// raceOn says whether the test binary was built with -race.
const raceOn = false
