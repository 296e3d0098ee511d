package headroom

import (
	"testing"
	"time"

	"github.com/herdcap/herdcap/limiter/origin"
)

func benchOrigin(b testing.TB) *Origin {
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 1000}}, Interval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	o, err := c.Origin("db")
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// TestHotPathAllocs: Record, Limit and Spare allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	o := benchOrigin(t)
	if n := testing.AllocsPerRun(1000, func() {
		o.Record(origin.Foreground, time.Millisecond, origin.Success)
		o.Record(origin.Background, 0, origin.Refused)
		_ = o.Limit()
		_ = o.Spare()
	}); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

// BenchmarkRecord: one call's report, on one goroutine and on all (where
// the atomics of one origin are contended).
func BenchmarkRecord(b *testing.B) {
	o := benchOrigin(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		lat := time.Millisecond
		for b.Loop() {
			o.Record(origin.Foreground, lat, origin.Success)
			lat ^= 1 // not always the minimum
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				o.Record(origin.Foreground, time.Millisecond, origin.Success)
			}
		})
	})
}

func BenchmarkLimit(b *testing.B) {
	o := benchOrigin(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = o.Limit()
	}
}

func BenchmarkSpare(b *testing.B) {
	o := benchOrigin(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = o.Spare()
	}
}
