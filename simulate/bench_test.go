package simulate

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkIncident1M is the scale target: the incident at 1,000,000
// clients and 10 nodes over 30 virtual minutes, unprotected and protected
// (Compare, the two runs on two goroutines). It reports the wall time
// (s/run) and, on Linux, the process's peak RSS; it is reported, not
// asserted (the target is at most 30 s and 2 GiB on two cores).
//
//	go test -run '^$' -bench Incident1M -benchtime 1x ./simulate/
func BenchmarkIncident1M(b *testing.B) {
	sc := builtin(b, "incident", 1_000_000)
	for range b.N {
		c, err := Compare(context.Background(), sc, Config{})
		if err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(c)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/run")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
}

// BenchmarkSteadyProtected measures the engine on a steady fleet: 100,000
// clients polling, protected (so every poll asks the coordinator's Due).
func BenchmarkSteadyProtected(b *testing.B) {
	sc := builtin(b, "rogue-invalidate", 100_000)
	sc.Trigger.At = Duration(sc.Duration - 1)
	b.ReportAllocs()
	for range b.N {
		r, err := Run(context.Background(), sc, Protected, Config{})
		if err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(r)
	}
}
