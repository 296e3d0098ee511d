package warmup_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/warmup"
)

// fetchTimes is a Warm.Fetch that records when each fetch started.
type fetchTimes struct {
	mu sync.Mutex
	at []time.Time
}

func (f *fetchTimes) fetch(_ context.Context, key string) (any, time.Time, error) {
	f.mu.Lock()
	f.at = append(f.at, time.Now())
	f.mu.Unlock()
	return key, time.Time{}, nil
}

// after returns how many fetches started after t.
func (f *fetchTimes) after(t time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.at {
		if a.After(t) {
			n++
		}
	}
	return n
}

func (f *fetchTimes) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.at)
}

// Pause, Resume and Abort from one node are seen by every node within one
// Interval: no fetch starts later than that after a pause or an abort,
// and fetches start again within it after a resume.
func TestPauseResumeAbortFleetWide(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			const interval = 100 * time.Millisecond
			// A fetch under way when the pause is recorded, and the
			// scheduling of a loaded 2-core machine under -race.
			const slack = 150 * time.Millisecond
			store := kind.make(t, "ctl-"+kind.name)
			var f fetchTimes
			var ws []*warmup.Warmer
			for i := range 3 {
				// 300 keys/s per node: 100,000 keys outlast the test.
				w, err := warmup.New(warmup.Config{Store: store(), Node: fmt.Sprintf("n%d", i), Budget: localBudget(t, 300, 1),
					ChunkSize: 50, Workers: 2, ClaimTTL: 5 * time.Second, Interval: interval})
				require.NoError(t, err)
				require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "ctl", Source: warmup.Slice(items(100_000)),
					Fetch: f.fetch, Store: discard}))
				ws = append(ws, w)
			}
			runFleet(t, ws...)
			ctx := context.Background()
			// Past the 300 keys the fleet's 6 workers hold at once in
			// chunks of 50: some chunk is done, so progress has a rate.
			waitFor(t, func() bool { return f.count() > 400 }, 10*time.Second)

			require.NoError(t, ws[0].Pause(ctx, "ctl", warmup.By{Who: "ops", Reason: "origin alarm"}))
			paused := time.Now()
			// Watch three intervals past the bound: nothing starts.
			waitUntil(paused.Add(interval + slack + 3*interval))
			assert.Zero(t, f.after(paused.Add(interval+slack)), "fetches started more than an interval after the pause")
			for _, w := range ws {
				st, err := w.Status(ctx, "ctl")
				require.NoError(t, err)
				assert.Equal(t, warmup.Paused, st.Phase)
				assert.Positive(t, st.Rate)
				assert.Positive(t, st.ETA, "a paused warm still has an ETA at its running rate")
				assert.Equal(t, warmup.By{Who: "ops", Reason: "origin alarm"}, st.By)
			}
			require.NoError(t, ws[1].Pause(ctx, "ctl", warmup.By{}), "pausing a paused warm does nothing")

			before := make([]int64, len(ws))
			for i, w := range ws {
				st, err := w.Status(ctx, "ctl")
				require.NoError(t, err)
				before[i] = st.Node.Fetched
			}
			require.NoError(t, ws[2].Resume(ctx, "ctl", warmup.By{Who: "ops"}))
			resumed := time.Now()
			// Every node fetches again within an interval (plus a few
			// fetches at 300/s, plus slack).
			waitUntil(resumed.Add(interval + slack + 20*time.Millisecond))
			for i, w := range ws {
				st, err := w.Status(ctx, "ctl")
				require.NoError(t, err)
				assert.Greater(t, st.Node.Fetched, before[i], "node %d did not resume within an interval", i)
			}

			require.NoError(t, ws[1].Abort(ctx, "ctl", warmup.By{Who: "ops", Reason: "bad push"}))
			aborted := time.Now()
			waitUntil(aborted.Add(interval + slack + 3*interval))
			assert.Zero(t, f.after(aborted.Add(interval+slack)), "fetches started more than an interval after the abort")
			st, err := ws[0].Status(ctx, "ctl")
			require.NoError(t, err)
			assert.Equal(t, warmup.Aborted, st.Phase)
			assert.False(t, st.FinishedAt.IsZero())
			assert.ErrorIs(t, ws[0].Resume(ctx, "ctl", warmup.By{}), warmup.ErrFinished)
			assert.NoError(t, ws[0].Abort(ctx, "ctl", warmup.By{}), "aborting an aborted warm does nothing")
			assert.ErrorIs(t, ws[0].Pause(ctx, "nope", warmup.By{}), warmup.ErrUnknownWarm)
		})
	}
}

// waitFor polls cond until it holds, failing after within.
func waitFor(t *testing.T, cond func() bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

// waitUntil lets wall time pass until t: the observation window of a
// timing bound, not a synchronisation.
func waitUntil(t time.Time) { time.Sleep(time.Until(t)) }
