//go:build !race

package simulate

// raceDetector reports whether the tests were built with -race.
const raceDetector = false
