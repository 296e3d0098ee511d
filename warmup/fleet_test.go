package warmup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/warmup"
)

// Three nodes warm 10,000 keys through a loopback origin: each key is
// fetched exactly once, and hottest first: in order within each chunk,
// and chunks in the order they are handed out, up to the chunks the fleet
// works on at once.
func TestFleetEachKeyOnceHottestFirst(t *testing.T) {
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			const n, nodes, workers, chunk = 10_000, 3, 2, 250
			o := newOrigin(t, 64)
			c := newCache()
			store := kind.make(t, "once-"+kind.name)
			src := warmup.Slice(items(n))
			var ws []*warmup.Warmer
			for i := range nodes {
				w, err := warmup.New(warmup.Config{Store: store(), Node: fmt.Sprintf("n%d", i), Budget: localBudget(t, 1e6, 1000),
					ChunkSize: chunk, Workers: workers, ClaimTTL: 5 * time.Second, Interval: 50 * time.Millisecond})
				require.NoError(t, err)
				require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "once", Source: src, Fetch: o.fetch, Store: c.store}))
				ws = append(ws, w)
			}
			stop := runFleet(t, ws...)
			// 10,000 loopback fetches take about a second here; 60 s
			// covers a loaded 2-core machine under -race.
			st := waitPhase(t, ws[0], "once", warmup.Done, 60*time.Second)
			stop()
			counts, order, _ := o.snapshot()
			assert.Len(t, counts, n)
			for k, v := range counts {
				if v != 1 {
					t.Errorf("key %s fetched %d times", k, v)
				}
			}
			assert.Equal(t, n, c.len())
			assert.EqualValues(t, n, st.Done)
			assert.EqualValues(t, n/chunk, st.DoneChunks)
			assert.Zero(t, st.Failed)
			// Hottest first: within each chunk the keys are fetched in
			// order, and chunks start in the order they are handed out,
			// up to the chunks the fleet works on at once (W = nodes ×
			// workers; 2W allows for a worker descheduled between its
			// claim and its first fetch on a loaded machine). A worker
			// slowed mid-chunk (a slow store call) delays only the rest
			// of its chunk.
			const w = nodes * workers
			first := make([]int, n/chunk)
			last := make([]int, n/chunk)
			for i := range first {
				first[i] = -1
			}
			for i, k := range order {
				var rank int
				_, _ = fmt.Sscanf(k, "key-%d", &rank)
				c := rank / chunk
				if first[c] < 0 {
					first[c] = i
				} else if prev := order[last[c]]; prev > k {
					t.Fatalf("in chunk %d, %s was fetched after %s", c, k, prev)
				}
				last[c] = i
			}
			maxLag := 0
			for c := range first {
				for d := c + 1; d < len(first); d++ {
					if first[c] > first[d] {
						require.Less(t, d-c, 2*w, "chunk %d started after chunk %d", c, d)
						maxLag = max(maxLag, d-c)
					}
				}
			}
			t.Logf("chunks started out of order by at most %d (W = %d)", maxLag, w)
			var fetched int64
			for _, w := range ws {
				s, err := w.Status(context.Background(), "once")
				require.NoError(t, err)
				fetched += s.Node.Fetched
			}
			assert.EqualValues(t, n, fetched)
		})
	}
}
