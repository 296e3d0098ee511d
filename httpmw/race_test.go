//go:build race

package httpmw

const raceEnabled = true
