package simulate

import "syscall"

// peakRSS returns the process's peak resident set size in bytes (Linux
// reports it in KiB; other systems differ, see rss_other_test.go).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}
