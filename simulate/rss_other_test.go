//go:build !linux

package simulate

// peakRSS is not reported off Linux (getrusage's units differ, and
// Windows has none).
func peakRSS() int64 { return 0 }
