package warmup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/warmup"
)

// BenchmarkPerKeyOverhead measures what the Warmer adds to each key with
// no-op Fetch and Store: reading the item, the duplicate check, the
// hold-off check, a token of a fleet.Leased budget (from the lease: no
// round trip), and the chunk's claim, renewals and completion on a
// RedisStore, amortised over ChunkSize keys. One worker, so ns/key is the
// per-key cost on one core. Issue 13's target: at most 2 µs per key.
func BenchmarkPerKeyOverhead(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			c := srv.Client(b)
			ns := uniqueNS("bench")
			budget, err := fleet.NewLeased(fleet.Redis{Client: c, Name: ns}, limiter.PerSecond(1e8, 1_000_000), fleet.LeasedConfig{})
			require.NoError(b, err)
			b.Cleanup(func() { _ = budget.Close() })
			var store warmup.Store = warmup.NewMemoryStore()
			if kind == "redis" {
				store, err = warmup.NewRedisStore(fleet.Redis{Client: c, Name: ns, Timeout: time.Second})
				require.NoError(b, err)
			}
			w, err := warmup.New(warmup.Config{Store: store, Budget: budget, Workers: 1, ChunkSize: 1000})
			require.NoError(b, err)
			src := make([]warmup.Item, b.N)
			for i := range src {
				src[i] = warmup.Item{Key: fmt.Sprintf("k%d", i), Weight: float64(b.N - i)}
			}
			require.NoError(b, w.Start(context.Background(), warmup.Warm{ID: "b", Source: warmup.Slice(src), Fetch: noFetch, Store: discard}))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = w.Run(ctx); close(done) }()
			for {
				st, err := w.Status(context.Background(), "b")
				if err == nil && st.Phase == warmup.Done {
					break
				}
				time.Sleep(200 * time.Microsecond) // polling
			}
			took := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N), "ns/key")
		})
	}
}
