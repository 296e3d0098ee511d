//go:build race

package warmup_test

// raceEnabled: the race detector slows the per-key path about tenfold.
const raceEnabled = true
