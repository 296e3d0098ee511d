package limiter

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
)

// nonFatal hands redistest a testing.TB that may be used off the benchmark's
// goroutine: Fatalf reports the error without stopping the goroutine (which
// only the benchmark's own goroutine may do).
type nonFatal struct{ testing.TB }

func (n nonFatal) Fatalf(format string, args ...any) { n.Errorf(format, args...) }

// BenchmarkOutageKill measures decision latency while a real redis-server is
// killed (SIGKILL) under concurrent load, for the Redis and Leased backends
// with the default time budget (DefaultTimeout, 20 ms), breaker and failure
// policy (FailLocal). RunParallel runs one goroutine per GOMAXPROCS over 64
// keys: as many as can run at once (more would measure the Go scheduler's
// 10 ms time slices rather than the limiter, since the leased hot path never
// blocks; vary -cpu for more load). The server is killed once half of b.N
// decisions have started, and every decision is timed. It reports:
//
//   - max-ms: the slowest decision of the run, those in flight at the kill
//     included: the contract is max-ms <= budget-ms + 5 (scheduling noise);
//   - max-after-ms: the slowest decision made after the kill;
//   - p99-us and p999-us: over the decisions made after the kill;
//   - budget-ms: the time budget, for reference.
//
// Figures are only meaningful on an otherwise idle machine; the timed test
// (TestFailLocalUnderKillAndRestart) holds a looser bound that survives a
// loaded CI machine.
func BenchmarkOutageKill(b *testing.B) {
	lim := PerSecond(1e6, 1e6)
	for _, bc := range []struct {
		name string
		make func(c redis.UniversalClient) (Budget, func() error, error)
	}{
		{"redis", func(c redis.UniversalClient) (Budget, func() error, error) {
			bk, err := NewRedis(c, lim, WithName(uniqueName()))
			if err != nil {
				return nil, nil, err
			}
			return bk, bk.Close, nil
		}},
		{"leased", func(c redis.UniversalClient) (Budget, func() error, error) {
			bk, err := NewLeased(c, lim, WithName(uniqueName()))
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
			b.ReportMetric(float64(DefaultTimeout)/1e6, "budget-ms")
			if len(after) > 0 {
				slices.Sort(after)
				b.ReportMetric(float64(after[len(after)*99/100])/1e3, "p99-us")
				b.ReportMetric(float64(after[len(after)*999/1000])/1e3, "p999-us")
			}
		})
	}
}
