//go:build race

package limiter

// raceEnabled: the race detector slows map-heavy tests about twentyfold.
const raceEnabled = true
