//go:build !race

package warmup_test

const raceEnabled = false
