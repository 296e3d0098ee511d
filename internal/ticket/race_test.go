//go:build race

package ticket

// raceEnabled: sync.Pool drops entries at random under the race detector.
const raceEnabled = true
