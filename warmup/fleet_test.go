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
// fetched exactly once, and hottest first: a key's place in the origin's
// order differs from its rank by less than the chunks the fleet can hold
// at once (3 nodes × Workers × ChunkSize).
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
			lag := nodes * workers * chunk
			for i, k := range order {
				var rank int
				_, _ = fmt.Sscanf(k, "key-%d", &rank)
				if d := i - rank; d >= lag || -d >= lag {
					t.Fatalf("key of rank %d fetched %d-th: hottest first allows a lag under %d", rank, i, lag)
				}
			}
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
