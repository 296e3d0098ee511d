package warmup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/warmup"
)

// The sketch keeps every key asked for more than n/k times, and Top lists
// them hottest first.
func TestSketchKeepsHeavyHitters(t *testing.T) {
	s, err := warmup.NewSketch(20)
	require.NoError(t, err)
	// 5 hot keys asked 400, 350, ..., 200 times, among 1000 cold keys asked
	// once each: 2500 requests, so every key asked more than 2500/20 = 125
	// times is kept. The hot keys enter while the sketch has room, so
	// their counts are exact and Top orders them exactly.
	for i := range 1000 {
		s.Observe(fmt.Sprintf("cold-%d", i))
		for h := range 5 {
			if i < 400-50*h {
				s.Observe(fmt.Sprintf("hot-%d", h))
			}
		}
	}
	top := s.Top()
	require.Len(t, top, 20)
	for h := range 5 {
		assert.Equal(t, fmt.Sprintf("hot-%d", h), top[h].Key, "rank %d", h)
		assert.EqualValues(t, 400-50*h, top[h].Weight, "rank %d", h)
	}
	for i := 1; i < len(top); i++ {
		assert.GreaterOrEqual(t, top[i-1].Weight, top[i].Weight)
	}
	_, err = warmup.NewSketch(0)
	assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { s.Observe("hot-0") }), "observing a kept key allocates nothing")
}

// A warm from one node's sketch is staged: the other nodes join it with
// no source of their own, and every key is fetched once across the fleet.
func TestStagedSketchWarmFleet(t *testing.T) {
	for _, kind := range storeKinds()[:2] {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.make(t, "staged-"+kind.name)
			sk, err := warmup.NewSketch(2000)
			require.NoError(t, err)
			for i := range 3000 {
				for range 1 + i%7 {
					sk.Observe(fmt.Sprintf("page-%d", i))
				}
			}
			top := sk.Top()
			log := newFetchLog()
			var ws []*warmup.Warmer
			for i := range 3 {
				node := fmt.Sprintf("n%d", i)
				w, err := warmup.New(warmup.Config{Store: store(), Node: node, Budget: localBudget(t, 1e6, 100),
					ChunkSize: 100, Workers: 2, Interval: 20 * time.Millisecond, ClaimTTL: 2 * time.Second})
				require.NoError(t, err)
				warm := warmup.Warm{ID: "sk", Staged: true, Fetch: log.fetch(node, nil), Store: discard}
				if i == 0 {
					warm.Source = warmup.Slice(top)
				}
				require.NoError(t, w.Start(context.Background(), warm))
				ws = append(ws, w)
			}
			runFleet(t, ws...)
			// 2000 no-op fetches: 10 s covers a loaded machine.
			st := waitPhase(t, ws[1], "sk", warmup.Done, 10*time.Second)
			assert.EqualValues(t, len(top), st.Keys)
			counts := log.counts()
			assert.Len(t, counts, len(top))
			for k, c := range counts {
				assert.Equal(t, 1, c, k)
			}
			// A node cannot join a warm that does not exist without a source.
			err = ws[2].Start(context.Background(), warmup.Warm{ID: "none", Staged: true, Fetch: noFetch, Store: discard})
			assert.ErrorIs(t, err, warmup.ErrInvalidWarm)
		})
	}
}
