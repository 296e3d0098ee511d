package warmup_test

import (
	"context"
	"iter"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/warmup"
)

// genKeys streams n keys, hottest first, holding none of them.
func genKeys(n int) iter.Seq2[string, float64] {
	return func(yield func(string, float64) bool) {
		buf := make([]byte, 0, 16)
		for i := range n {
			buf = strconv.AppendInt(append(buf[:0], "k"...), int64(i), 10)
			if !yield(string(buf), float64(n-i)) {
				return
			}
		}
	}
}

// liveHeap returns the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 10,000,000 keys from a streamed iterator (300,000 under -short or
// -race, where the per-key path is ten times slower) are warmed with
// bounded memory: the live heap never grows by more than a few chunks.
func TestStreamTenMillionBoundedMemory(t *testing.T) {
	n := 10_000_000
	if testing.Short() || raceEnabled {
		n = 300_000
	}
	const chunk, workers = 10_000, 2
	base := liveHeap()
	var peak atomic.Uint64
	var fetched atomic.Int64
	var mu sync.Mutex
	sample := func() {
		mu.Lock() // one sampler at a time: each forces a collection
		defer mu.Unlock()
		if h := liveHeap(); h > peak.Load() {
			peak.Store(h)
		}
	}
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e9, 1_000_000),
		ChunkSize: chunk, Workers: workers, Interval: 100 * time.Millisecond})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "10m", Source: warmup.Stream(genKeys(n)), Store: discard,
		Fetch: func(_ context.Context, key string) (any, time.Time, error) {
			if fetched.Add(1)%int64(n/10) == 0 {
				sample()
			}
			return nil, time.Time{}, nil
		}}))
	counted := time.Since(start)
	runFleet(t, w)
	// About 10 s for 10,000,000 keys here without -race; 3 minutes covers a
	// loaded machine.
	st := waitPhase(t, w, "10m", warmup.Done, 3*time.Minute)
	assert.EqualValues(t, n, st.Done)
	assert.EqualValues(t, n, fetched.Load())
	growth := int64(peak.Load()) - int64(base)
	// Holding the keys would take n × (16-byte header + 8-byte key + 8-byte
	// weight) at least: 320 MB for 10,000,000. The warm holds a chunk per
	// worker and its seen-set (about 2 MB); 32 MB of slack for the
	// runtime and the test's own goroutines.
	assert.Less(t, growth, int64(32<<20), "live heap grew by %d bytes", growth)
	t.Logf("%d keys: counted in %v, warmed in %v (%.0f keys/s); live heap growth at peak %d KiB",
		n, counted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), st.Rate, growth>>10)
}
