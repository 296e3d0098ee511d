package limiter

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herdcap/herdcap/internal/redistest"
)

func BenchmarkRedisAllowN(b *testing.B) {
	bk, err := NewRedis(srv.Client(b), PerSecond(1e9, 1e9), WithName(uniqueName()), WithFailure(FailOpen))
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := bk.AllowN(ctx, "hot", 1); err != nil || d.Source != SourceRedis {
				b.Fatal(d, err)
			}
		}
	})
}

func BenchmarkLeasedAllowN(b *testing.B) {
	bk, err := NewLeased(srv.Client(b), PerSecond(1e7, 1e7), WithName(uniqueName()), WithFailure(FailOpen))
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bk.AllowN(ctx, "hot", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLocalAllowN10kKeysParallel(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9))
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = lb.AllowN(ctx, keys[i%len(keys)], 1)
			i++
		}
	})
}

// BenchmarkRedisOutage measures decisions while Redis is stalled (SIGSTOP):
// the slowest one must stay within the time budget (20 ms by default) plus
// scheduling noise, and once the breaker opens they cost microseconds. It
// reports max-ms and p99-us.
func BenchmarkRedisOutage(b *testing.B) {
	s := redistest.Start(b)
	bk, err := NewRedis(s.Client(b), PerSecond(1e6, 1e6), WithName(uniqueName()))
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	ctx := context.Background()
	if _, err := bk.AllowN(ctx, "k", 1); err != nil {
		b.Fatal(err)
	}
	s.Pause(b)
	defer s.Resume(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := bk.AllowN(ctx, "k", 1); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-us")
}
