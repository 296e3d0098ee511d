package warmup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/warmup"
)

// A warm from a Redis sorted set, read by rank pages of 1000, highest
// score first, by two nodes: each member fetched once, in order within
// each chunk.
func TestSortedSetSource(t *testing.T) {
	c := srv.Client(t)
	key := uniqueNS("zset")
	const n = 2500 // three pages
	zs := make([]redis.Z, n)
	for i := range zs {
		zs[i] = redis.Z{Member: fmt.Sprintf("m%04d", i), Score: float64(n - i)}
	}
	require.NoError(t, c.ZAdd(context.Background(), key, zs...).Err())
	t.Cleanup(func() { c.Del(context.Background(), key) })
	src := warmup.SortedSet(c, key)
	var got []string
	for it, err := range src.Items(context.Background(), 999) {
		require.NoError(t, err)
		got = append(got, it.Key)
		if len(got) == 3 {
			break
		}
	}
	assert.Equal(t, []string{"m0999", "m1000", "m1001"}, got, "reading from a position crosses a page boundary")

	log := newFetchLog()
	store := warmup.NewMemoryStore()
	var ws []*warmup.Warmer
	for i := range 2 {
		node := fmt.Sprintf("n%d", i)
		w, err := warmup.New(warmup.Config{Store: store, Node: node, Budget: localBudget(t, 1e6, 100), ChunkSize: 300,
			Interval: 20 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "z", Source: src, Fetch: log.fetch(node, nil), Store: discard}))
		ws = append(ws, w)
	}
	runFleet(t, ws...)
	// 2500 no-op fetches and a few dozen page reads: 10 s is generous.
	st := waitPhase(t, ws[0], "z", warmup.Done, 10*time.Second)
	assert.EqualValues(t, n, st.Keys)
	counts := log.counts()
	assert.Len(t, counts, n)
	for k, v := range counts {
		assert.Equal(t, 1, v, k)
	}
}
