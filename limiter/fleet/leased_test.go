package limiter

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

func newLeasedForTest(t *testing.T, c redis.UniversalClient, l Limit, opts ...Option) *Leased {
	t.Helper()
	opts = append([]Option{WithTimeout(2 * time.Second)}, opts...)
	b, err := NewLeased(c, l, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// admission is one allowed request: when, and how many tokens.
type admission struct {
	at time.Time
	n  int
}

// TestLeasedOvershootBound hammers one key from four Leased nodes sharing one
// Redis and checks every trailing window of admitted tokens against the bound
// stated on Leased: Rate·W + Burst + N·L. Requests are for one token, for a
// few, and for more than the lease size L (which the bucket grants all at
// once or not at all, never growing a lease).
func TestLeasedOvershootBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"redis", func(t *testing.T) redis.UniversalClient { return srv.Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return cluster.Client(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				nodes   = 4
				workers = 8
				run     = 2 * time.Second
			)
			lim := PerSecond(500, 100)
			name := uniqueName()
			var bs []*Leased
			for range nodes {
				bs = append(bs, newLeasedForTest(t, tc.client(t), lim, WithName(name), WithFailure(FailOpen)))
			}
			L := bs[0].maxLeaseFor(lim)
			require.Equal(t, 50, L, "a tenth of a second of 500/s")
			// Mostly single tokens, some of 3, and some of 60 > L.
			sizes := []int{1, 1, 1, 1, 3, 1, 1, 1, 60}

			var (
				mu    sync.Mutex
				adm   []admission
				wg    sync.WaitGroup
				asked atomic.Int64
				big   atomic.Int64 // admitted requests of more than L
			)
			start := time.Now()
			for _, b := range bs {
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []admission
						for i := w; i < 2_000_000 && time.Since(start) < run; i++ {
							n := sizes[i%len(sizes)]
							asked.Add(int64(n))
							d, err := b.AllowN(context.Background(), "hot", n)
							if err == nil && d.Allowed {
								mine = append(mine, admission{time.Now(), n})
								if n > L {
									big.Add(1)
								}
							}
							// Pause like a server between requests, rather
							// than spin: 32 spinning goroutines on two
							// cores would starve the refills of CPU.
							time.Sleep(200 * time.Microsecond)
						}
						mu.Lock()
						adm = append(adm, mine...)
						mu.Unlock()
					}()
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			slices.SortFunc(adm, func(a, b admission) int { return a.at.Compare(b.at) })
			for _, w := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second} {
				bound := lim.PerSecond()*w.Seconds() + float64(lim.Burst) + float64(nodes*L)
				worst, sum, j := 0, 0, 0
				for i := range adm {
					sum += adm[i].n
					for adm[i].at.Sub(adm[j].at) > w {
						sum -= adm[j].n
						j++
					}
					worst = max(worst, sum)
				}
				t.Logf("window %v: worst %d tokens admitted, bound %.0f", w, worst, bound)
				assert.LessOrEqual(t, float64(worst), bound, "window %v", w)
			}
			total := 0
			for _, a := range adm {
				total += a.n
			}
			ideal := lim.PerSecond()*elapsed.Seconds() + float64(lim.Burst)
			t.Logf("asked %d tokens, admitted %d (%d requests of %d) in %v; ideal %.0f", asked.Load(), total, big.Load(), sizes[len(sizes)-1], elapsed, ideal)
			assert.LessOrEqual(t, float64(total), ideal+float64(nodes*L))
			for i, b := range bs {
				n, _ := leaseState(b, "hot")
				assert.LessOrEqual(t, n, L, "node %d holds at most L", i)
			}
			// Liveness: the nodes did not simply refuse. Under -race on two
			// cores shared with other test binaries (go test runs packages
			// in parallel) the redis-server and the refills can be starved
			// for a second at a time, hence a loose floor; the bench program
			// measures the real figure (99.6% of ideal).
			assert.GreaterOrEqual(t, float64(total), 0.25*ideal)
		})
	}
}

func TestLeasedHotPathMakesNoRoundTrip(t *testing.T) {
	c := srv.Client(t)
	b := newLeasedForTest(t, c, PerSecond(100_000, 100_000), WithName(uniqueName()), WithFailure(FailOpen))
	ctx := context.Background()
	// Warm up: demand is observed and a lease of ~0.1 s of it is taken.
	for range 200 {
		_, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	h := &countingHook{}
	c.AddHook(h)
	decisions, fromLease := 0, 0
	for range 2000 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		decisions++
		if d.Source == SourceLease {
			fromLease++
		}
	}
	t.Logf("%d decisions, %d from the lease, %d commands", decisions, fromLease, h.cmds.Load())
	assert.Greater(t, fromLease, decisions*9/10)
	assert.Less(t, h.cmds.Load(), int64(decisions/10), "round trips are batched refills, not one per decision")
}

func TestLeasedGivesTokensBackOnClose(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	lim := PerSecond(0.001, 100) // effectively no refill during the test
	strict := newRedisForTest(t, c, lim, WithName(name), WithFailure(FailOpen))
	b, err := NewLeased(c, lim, WithName(name), WithFailure(FailOpen), WithLease(time.Second, 40))
	require.NoError(t, err)
	ctx := context.Background()
	for range 30 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	require.Eventually(t, func() bool {
		d, err := strict.AllowN(ctx, "k", 0)
		return err == nil && d.Remaining < 70
	}, 5*time.Second, time.Millisecond, "the lease holds tokens beyond those spent")
	require.NoError(t, b.Close())
	d, err := strict.AllowN(ctx, "k", 0)
	require.NoError(t, err)
	assert.Equal(t, 70, d.Remaining, "100 - 30 spent: the unspent lease came back")
	_, err = b.AllowN(ctx, "k", 1)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestLeasedBadInputAndOptions(t *testing.T) {
	c := srv.Client(t)
	b := newLeasedForTest(t, c, PerSecond(10, 10), WithName(uniqueName()), WithFailure(FailOpen))
	ctx := context.Background()
	_, err := b.AllowN(ctx, "", 1)
	assert.ErrorIs(t, err, ErrInvalidKey)
	_, err = b.AllowN(ctx, "k", -1)
	assert.ErrorIs(t, err, ErrInvalidN)
	_, err = b.AllowN(ctx, "k", 11)
	assert.ErrorIs(t, err, ErrInvalidN)
	_, err = NewLeased(c, PerSecond(10, 10), WithLease(0, 1))
	assert.ErrorContains(t, err, "WithLease")
	_, err = NewLeased(c, PerSecond(10, 10), WithLease(time.Second, 11))
	assert.ErrorContains(t, err, "exceeds the burst")
	_, err = NewLocal(PerSecond(10, 10), WithLease(time.Second, 1))
	assert.ErrorContains(t, err, "does not apply to NewLocal")
}

func TestLeasedFallsBackWhenRedisDies(t *testing.T) {
	s := redistest.Start(t)
	b, err := NewLeased(s.Client(t), PerSecond(1000, 1000), WithName(uniqueName()),
		WithTimeout(30*time.Millisecond), WithBreaker(1, time.Hour), WithHeartbeat(20*time.Millisecond))
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	d, err := b.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	s.Kill(t)
	sources := map[Source]int{}
	for range 3000 {
		start := time.Now()
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.Less(t, time.Since(start), 30*time.Millisecond+slack)
		sources[d.Source]++
	}
	t.Logf("sources: %v", sources)
	assert.Greater(t, sources[SourceFallback], 0, "once the lease is spent, the fallback answers")
}

func TestLeasedBoundedKeysReturnEvictedLeases(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	lim := PerSecond(0.001, 10)
	b := newLeasedForTest(t, c, lim, WithName(name), WithFailure(FailOpen), WithMaxKeys(2), WithLease(time.Second, 5))
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		_, err := b.AllowN(ctx, k, 1)
		require.NoError(t, err)
	}
	strict := newRedisForTest(t, c, lim, WithName(name), WithFailure(FailOpen))
	// Evicted leases are given back in the background; each key ends with
	// 10 - 1 spent, whatever its lease held.
	require.Eventually(t, func() bool {
		d, err := strict.AllowN(ctx, "a", 0)
		return err == nil && d.Remaining == 9
	}, 5*time.Second, 5*time.Millisecond)
}
