package warmup_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/warmup"
)

// With a fixed budget of R keys/s (burst 1), N keys take about N/R: never
// less than (N-1)/R, which the bucket forbids, and not much more.
func TestPacingFixedBudget(t *testing.T) {
	const rate, n = 200.0, 300
	o := newOrigin(t, 16)
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, rate, 1),
		ChunkSize: 50, Workers: 4, Interval: 50 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "p", Source: warmup.Slice(items(n)), Fetch: o.fetch, Store: discard}))
	runFleet(t, w)
	waitPhase(t, w, "p", warmup.Done, 30*time.Second)
	took := time.Since(start)
	_, _, at := o.snapshot()
	require.Len(t, at, n)
	span := at[len(at)-1].Sub(start)
	// The bucket allows one fetch at once and one per 1/R after, so the
	// last token is granted at least (N-1)/R after the first, which comes
	// after start; the last fetch reaches the origin after its token. The
	// bound is causal and needs no tolerance. (Measuring from the first
	// fetch's arrival instead would not be: that request can be delayed
	// by scheduling more than the last one is.)
	assert.GreaterOrEqual(t, span, time.Duration(float64(n-1)/rate*float64(time.Second)))
	// Refused workers come back at the bucket's refill times (its denial
	// tail), so the pace stays close to R; 25% + 500 ms covers wake-up
	// latency on a loaded 2-core machine under -race.
	assert.Less(t, took, time.Duration(float64(n)/rate*1.25*float64(time.Second))+500*time.Millisecond)
	t.Logf("%d keys at %v keys/s: %v (start to last fetch %v, ideal %v)", n, rate, took, span,
		time.Duration(float64(n-1)/rate*float64(time.Second)))
}

// With a Guard, the warm fetches in the background lane: end to end through
// the loopback origin, a foreground stream at half the budget's rate is
// never refused, while the warm takes what is left and no more.
func TestGuardForegroundKeepsShare(t *testing.T) {
	const rate, burst = 400.0, 40
	o := newOrigin(t, 32)
	budget := localBudget(t, rate, burst)
	g, err := origin.New(origin.Config{Budget: budget, Name: "db", MaxWait: 250 * time.Millisecond})
	require.NoError(t, err)
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Guard: g, ChunkSize: 100, Workers: 4,
		Interval: 50 * time.Millisecond})
	require.NoError(t, err)
	// The bucket is full (burst) until its first take, which comes after
	// t0: whatever the lanes take by now is at most burst + R·(now − t0).
	t0 := time.Now()
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "g", Source: warmup.Slice(items(100_000)), Fetch: o.fetch, Store: discard}))
	stop := runFleet(t, w)

	// The foreground: 200 calls/s for 2 s, each through the guard to the
	// origin.
	const fgRate, window = 200.0, 2 * time.Second
	var fgOK, fgRefused atomic.Int64
	start := time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / fgRate))
	for time.Since(start) < window {
		<-tick.C
		err := g.Do(context.Background(), origin.Foreground, func(ctx context.Context) error {
			_, _, err := o.fetch(ctx, "fg")
			return err
		})
		switch {
		case err == nil:
			fgOK.Add(1)
		case errors.Is(err, origin.ErrRefused):
			fgRefused.Add(1)
		default:
			t.Errorf("foreground call failed: %v", err)
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	stop()
	st, err := w.Status(context.Background(), "g")
	require.NoError(t, err)
	bg := st.Node.Fetched
	assert.Zero(t, fgRefused.Load(), "the foreground was refused while the warm ran")
	assert.Positive(t, bg, "the warm made no progress in the background")
	// Everything together stays within the bucket: R per second plus the
	// burst (and the warm's fetches after the window, bounded by the same
	// bucket over the time stop took).
	total := float64(fgOK.Load() + bg)
	limit := rate*(time.Since(t0).Seconds()) + burst
	assert.LessOrEqual(t, total, limit)
	gs := g.Stats()
	t.Logf("in %v: foreground %d calls (refused %d), warm %d fetches (refused %d by the guard); guard lanes %v refused %v",
		elapsed.Round(time.Millisecond), fgOK.Load(), fgRefused.Load(), bg, st.Node.Refused, gs.LaneCalls, gs.LaneRefused)
}
