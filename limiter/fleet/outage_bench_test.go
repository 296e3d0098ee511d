package fleet

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/limiter"
)

// nonFatal hands redistest a testing.TB that may be used off the benchmark's
// goroutine: Fatalf reports the error without stopping the goroutine (which
// only the benchmark's own goroutine may do).
type nonFatal struct{ testing.TB }

func (n nonFatal) Fatalf(format string, args ...any) { n.Errorf(format, args...) }

// BenchmarkOutageKill measures decision latency while a real redis-server is
// killed (SIGKILL) under concurrent load, for Strict and Leased with the
// default Redis.Timeout (20 ms), breaker and failure policy (FailLocal). RunParallel runs one goroutine per GOMAXPROCS over 64
// keys: as many as can run at once (more would measure the Go scheduler's
// 10 ms time slices rather than the limiter, since the leased hot path never
// blocks; vary -cpu for more load). The server is killed once half of b.N
// decisions have started, and every decision is timed. It reports:
//
//   - max-ms: the slowest decision of the run, those in flight at the kill
//     included: the contract is max-ms <= timeout-ms + 5 (scheduling noise);
//   - max-after-ms: the slowest decision made after the kill;
//   - p99-us and p999-us: over the decisions made after the kill;
//   - timeout-ms: the Timeout, for reference.
//
// Figures are only meaningful on an otherwise idle machine; the timed test
// (TestFailLocalUnderKillAndRestart) holds a looser bound that survives a
// loaded CI machine.
func BenchmarkOutageKill(b *testing.B) {
	lim := limiter.PerSecond(1e6, 1e6)
	for _, bc := range []struct {
		name string
		make func(c redis.UniversalClient) (budget, func() error, error)
	}{
		{"strict", func(c redis.UniversalClient) (budget, func() error, error) {
			bk, err := NewStrict(Redis{Client: c, Name: uniqueName()}, lim, Config{})
			if err != nil {
				return nil, nil, err
			}
			return bk, bk.Close, nil
		}},
		{"leased", func(c redis.UniversalClient) (budget, func() error, error) {
			bk, err := NewLeased(Redis{Client: c, Name: uniqueName()}, lim, LeasedConfig{})
			if err != nil {
				return nil, nil, err
			}
			return bk, bk.Close, nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := redistest.Start(b)
			bk, closeBk, err := bc.make(s.Client(b))
			if err != nil {
				b.Fatal(err)
			}
			defer closeBk()
			ctx := context.Background()
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
				if _, err := bk.AllowN(ctx, keys[i], 1); err != nil {
					b.Fatal(err)
				}
			}
			var (
				started atomic.Int64
				killed  atomic.Bool
				trigger = make(chan struct{})
				done    = make(chan struct{})
				mu      sync.Mutex
				before  []time.Duration // decisions started before the kill ended
				after   []time.Duration // decisions started after it
			)
			half := int64(b.N / 2)
			go func() {
				defer close(done)
				<-trigger
				s.Kill(nonFatal{b})
				killed.Store(true)
			}()
			if half == 0 {
				close(trigger)
				<-done
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mb, ma []time.Duration
				i := 0
				for pb.Next() {
					if started.Add(1) == half {
						close(trigger)
					}
					out := killed.Load()
					start := time.Now()
					_, err := bk.AllowN(ctx, keys[i%len(keys)], 1)
					el := time.Since(start)
					if err != nil {
						b.Error(err)
						return
					}
					if out {
						ma = append(ma, el)
					} else {
						mb = append(mb, el)
					}
					i++
				}
				mu.Lock()
				before = append(before, mb...)
				after = append(after, ma...)
				mu.Unlock()
			})
			b.StopTimer()
			<-done
			worstBefore, worstAfter := time.Duration(0), time.Duration(0)
			for _, d := range before {
				worstBefore = max(worstBefore, d)
			}
			for _, d := range after {
				worstAfter = max(worstAfter, d)
			}
			b.ReportMetric(float64(max(worstBefore, worstAfter))/1e6, "max-ms")
			b.ReportMetric(float64(worstAfter)/1e6, "max-after-ms")
			b.ReportMetric(float64(remote.DefaultTimeout)/1e6, "timeout-ms")
			if len(after) > 0 {
				slices.Sort(after)
				b.ReportMetric(float64(after[len(after)*99/100])/1e3, "p99-us")
				b.ReportMetric(float64(after[len(after)*999/1000])/1e3, "p999-us")
			}
		})
	}
}

func BenchmarkStrictAllowN(b *testing.B) {
	bk, err := NewStrict(Redis{Client: srv.Client(b), Name: uniqueName()}, limiter.PerSecond(1e9, 1e9), failOpen)
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := bk.AllowN(ctx, "hot", 1); err != nil || d.Via != limiter.ViaRedis {
				b.Fatal(d, err)
			}
		}
	})
}

// BenchmarkStrictTakeLimit: Strict with a limit the request carries (the
// per-key ramp state in the bucket, in the same script).
func BenchmarkStrictTakeLimit(b *testing.B) {
	bk, err := NewStrict(Redis{Client: srv.Client(b), Name: uniqueName()}, limiter.PerSecond(1, 1), failOpen)
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	ctx := context.Background()
	plan := limiter.PerSecond(1e9, 1e9)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := bk.Take(ctx, limiter.Request{Key: "hot", N: 1, Limit: plan}); err != nil || d.Via != limiter.ViaRedis {
				b.Fatal(d, err)
			}
		}
	})
}

func BenchmarkLeasedAllowN(b *testing.B) {
	bk, err := NewLeased(Redis{Client: srv.Client(b), Name: uniqueName()}, limiter.PerSecond(1e7, 1e7), LeasedConfig{Config: failOpen})
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

// BenchmarkStrictOutage measures decisions while Redis is stalled
// (SIGSTOP): the slowest one must stay within Redis.Timeout (20 ms by
// default) plus scheduling noise, and once the breaker opens they cost
// microseconds. It reports max-ms and p99-us.
func BenchmarkStrictOutage(b *testing.B) {
	s := redistest.Start(b)
	bk, err := NewStrict(Redis{Client: s.Client(b), Name: uniqueName()}, limiter.PerSecond(1e6, 1e6), Config{})
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
