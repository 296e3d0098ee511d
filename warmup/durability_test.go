package warmup_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/warmup"
)

// fetchLog is a Warm.Fetch that records who fetched which key, when.
type fetchLog struct {
	mu    sync.Mutex
	byKey map[string][]string // key -> nodes, in order
	first map[string]time.Time
}

func newFetchLog() *fetchLog {
	return &fetchLog{byKey: map[string][]string{}, first: map[string]time.Time{}}
}

func (f *fetchLog) fetch(node string, before func(ctx context.Context, key string)) func(context.Context, string) (any, time.Time, error) {
	return func(ctx context.Context, key string) (any, time.Time, error) {
		if before != nil {
			before(ctx, key)
		}
		if err := ctx.Err(); err != nil {
			return nil, time.Time{}, err
		}
		f.mu.Lock()
		f.byKey[key] = append(f.byKey[key], node)
		if _, ok := f.first[key+"@"+node]; !ok {
			f.first[key+"@"+node] = time.Now()
		}
		f.mu.Unlock()
		return key, time.Time{}, nil
	}
}

func (f *fetchLog) nodes(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.byKey[key]...)
}

func (f *fetchLog) at(key, node string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.first[key+"@"+node]
	return t, ok
}

func (f *fetchLog) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.byKey {
		out[k] = len(v)
	}
	return out
}

func discard(context.Context, string, any, time.Time) error { return nil }

// A node killed while holding a claim (its Run's context cancelled, no
// release) loses the chunk when the claim expires; another node then
// fetches it, within ClaimTTL + one Interval of the kill.
func TestKilledNodeChunkTakenOver(t *testing.T) {
	for _, kind := range storeKinds()[:2] {
		t.Run(kind.name, func(t *testing.T) {
			const ttl, interval = 400 * time.Millisecond, 50 * time.Millisecond
			store := kind.make(t, "killed-"+kind.name)
			log := newFetchLog()
			// Two chunks of 10, streamed: b reads chunk 1 first, then
			// goes back to chunk 0 (a new pass over the stream).
			src := warmup.Stream(func(yield func(string, float64) bool) {
				for _, it := range items(20) {
					if !yield(it.Key, it.Weight) {
						return
					}
				}
			})
			blocked := make(chan struct{})
			var once sync.Once
			// Node a blocks in its 6th fetch of chunk 0 until killed.
			var aFetches atomic.Int64
			a, err := warmup.New(warmup.Config{Store: store(), Node: "a", Budget: localBudget(t, 1e6, 100),
				ChunkSize: 10, Workers: 1, ClaimTTL: ttl, Interval: interval})
			require.NoError(t, err)
			require.NoError(t, a.Start(context.Background(), warmup.Warm{ID: "k", Source: src, Store: discard,
				Fetch: log.fetch("a", func(ctx context.Context, _ string) {
					if aFetches.Add(1) == 6 {
						once.Do(func() { close(blocked) })
						<-ctx.Done()
					}
				})}))
			stopA := runFleet(t, a)
			<-blocked
			b, err := warmup.New(warmup.Config{Store: store(), Node: "b", Budget: localBudget(t, 1e6, 100),
				ChunkSize: 10, Workers: 1, ClaimTTL: ttl, Interval: interval})
			require.NoError(t, err)
			require.NoError(t, b.Start(context.Background(), warmup.Warm{ID: "k", Source: src, Store: discard, Fetch: log.fetch("b", nil)}))
			stopB := runFleet(t, b)
			killed := time.Now()
			stopA()
			// b warms chunk 1 at once, then chunk 0 once a's claim
			// expires. 10 s covers a loaded machine; the tight bound is
			// checked on the times below.
			waitPhase(t, b, "k", warmup.Done, 10*time.Second)
			stopB()
			took, ok := log.at("key-0000005", "b")
			require.True(t, ok, "b never fetched a's chunk")
			// a's claim was taken (or last renewed) before the kill, so it
			// expires by killed + ttl; b polls every interval. 250 ms of
			// slack for scheduling on a loaded 2-core machine under -race.
			assert.Less(t, took.Sub(killed), ttl+interval+250*time.Millisecond)
			assert.Equal(t, []string{"a"}, log.nodes("key-0000000")[:1], "a fetched chunk 0 first")
			for i := range 20 {
				k := fmt.Sprintf("key-%07d", i)
				assert.Contains(t, log.nodes(k), "b", "key %s", k)
				if i >= 10 {
					assert.Equal(t, []string{"b"}, log.nodes(k))
				}
			}
		})
	}
}

// A node restarted mid-warm (a new Warmer on the same store) resumes from
// the checkpoint: only the chunk it was in is fetched again.
func TestRestartedNodeResumesFromCheckpoint(t *testing.T) {
	for _, kind := range storeKinds()[:2] {
		t.Run(kind.name, func(t *testing.T) {
			const n, chunk = 1000, 100
			store := kind.make(t, "restart-"+kind.name)
			log := newFetchLog()
			src := warmup.Slice(items(n))
			cfg := warmup.Config{Node: "a", Budget: localBudget(t, 1e6, 100), ChunkSize: chunk, Workers: 1,
				ClaimTTL: 200 * time.Millisecond, Interval: 20 * time.Millisecond}
			cfg.Store = store()
			a, err := warmup.New(cfg)
			require.NoError(t, err)
			var fetched atomic.Int64
			stopped := make(chan struct{})
			var once sync.Once
			require.NoError(t, a.Start(context.Background(), warmup.Warm{ID: "r", Source: src, Store: discard,
				Fetch: log.fetch("a", func(ctx context.Context, _ string) {
					if fetched.Add(1) == 450 { // mid chunk 4
						once.Do(func() { close(stopped) })
						<-ctx.Done()
					}
				})}))
			stopA := runFleet(t, a)
			<-stopped
			stopA()
			cfg.Store = store()
			a2, err := warmup.New(cfg)
			require.NoError(t, err)
			require.NoError(t, a2.Start(context.Background(), warmup.Warm{ID: "r", Source: src, Store: discard, Fetch: log.fetch("a2", nil)}))
			runFleet(t, a2)
			// 10 s: 550 no-op fetches and one claim expiry (200 ms).
			waitPhase(t, a2, "r", warmup.Done, 10*time.Second)
			again := 0
			for k, c := range log.counts() {
				require.GreaterOrEqual(t, c, 1, k)
				again += c - 1
			}
			assert.LessOrEqual(t, again, chunk, "a restarted node fetches at most one chunk again")
			assert.Len(t, log.counts(), n)
		})
	}
}

// A redis-server restarted (empty) mid-warm: the nodes write the warm
// back, each with the chunks it completed, and the warm finishes with no
// key lost; keys fetched twice are at most the chunks held at the restart.
// A staged warm is staged again by the node that staged it.
func TestRedisRestartMidWarm(t *testing.T) {
	for _, staged := range []bool{false, true} {
		t.Run(fmt.Sprintf("staged=%v", staged), func(t *testing.T) { testRedisRestart(t, staged) })
	}
}

func testRedisRestart(t *testing.T, staged bool) {
	s := redistestStart(t)
	c := s.Client(t)
	const n, chunk, nodes, workers = 3000, 100, 3, 2
	log := newFetchLog()
	src := warmup.Slice(items(n))
	var ws []*warmup.Warmer
	var total atomic.Int64
	restartAt := make(chan struct{})
	var once sync.Once
	for i := range nodes {
		node := fmt.Sprintf("n%d", i)
		// 1000 keys/s per node: the warm takes about a second, and
		// the restart comes at a third of it.
		w, err := warmup.New(warmup.Config{Store: redisStore(t, c, "restart"), Node: node, Budget: localBudget(t, 1000, 1),
			ChunkSize: chunk, Workers: workers, ClaimTTL: time.Second, Interval: 50 * time.Millisecond})
		require.NoError(t, err)
		warm := warmup.Warm{ID: "rr", Source: src, Staged: staged, Store: discard,
			Fetch: log.fetch(node, func(context.Context, string) {
				if total.Add(1) == n/3 {
					once.Do(func() { close(restartAt) })
				}
			})}
		if staged && i > 0 {
			warm.Source = nil
		}
		require.NoError(t, w.Start(context.Background(), warm))
		ws = append(ws, w)
	}
	runFleet(t, ws...)
	<-restartAt
	s.Restart(t)
	// The breaker stays open 1 s after the restart; 30 s covers a loaded
	// machine.
	st := waitPhase(t, ws[0], "rr", warmup.Done, 30*time.Second)
	counts := log.counts()
	if len(counts) != n {
		var missing []int
		for i := range n {
			if counts[fmt.Sprintf("key-%07d", i)] == 0 {
				missing = append(missing, i)
			}
		}
		t.Fatalf("%d keys lost (status %+v): %v", len(missing), st, missing)
	}
	again := 0
	for _, v := range counts {
		again += v - 1
	}
	t.Logf("keys fetched twice across the restart: %d; done %d keys in %d chunks", again, st.Done, st.DoneChunks)
	assert.LessOrEqual(t, again, nodes*workers*chunk)
	assert.EqualValues(t, n, st.Done)
}

// While Redis does not answer (the server stopped, connections open), no
// chunk is claimed and finished chunks wait to be marked done; when it
// answers again the warm goes on and finishes, each key fetched once.
func TestRedisOutagePausesWork(t *testing.T) {
	s := redistestStart(t)
	c := s.Client(t)
	const n = 2000
	log := newFetchLog()
	var total atomic.Int64
	outage := make(chan struct{})
	var once sync.Once
	var ws []*warmup.Warmer
	for i := range 2 {
		node := fmt.Sprintf("n%d", i)
		st, err := warmup.NewRedisStore(fleet.Redis{Client: c, Name: "outage", Timeout: 50 * time.Millisecond, BreakerOpen: 200 * time.Millisecond})
		require.NoError(t, err)
		// 1000 keys/s per node; claims outlast the outage (5 s TTL).
		w, err := warmup.New(warmup.Config{Store: st, Node: node, Budget: localBudget(t, 1000, 1), ChunkSize: 100,
			Workers: 2, ClaimTTL: 5 * time.Second, Interval: 50 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "o", Source: warmup.Slice(items(n)), Store: discard,
			Fetch: log.fetch(node, func(context.Context, string) {
				if total.Add(1) == n/4 {
					once.Do(func() { close(outage) })
				}
			})}))
		ws = append(ws, w)
	}
	runFleet(t, ws...)
	<-outage
	s.Pause(t)
	stopped := time.Now()
	// Let the workers run into the outage: those in a chunk finish it
	// (at most 4 chunks of 100 at 1000 keys/s per node, 200 ms), then
	// nothing more can be claimed.
	waitUntil(stopped.Add(time.Second))
	during := len(log.counts())
	waitUntil(stopped.Add(1500 * time.Millisecond))
	assert.Equal(t, during, len(log.counts()), "keys fetched while Redis was away and no chunk was held")
	_, err := ws[0].Status(context.Background(), "o")
	assert.ErrorIs(t, err, warmup.ErrUnavailable)
	assert.ErrorIs(t, ws[1].Pause(context.Background(), "o", warmup.By{Who: "ops"}), warmup.ErrUnavailable)
	s.Resume(t)
	// The breaker probes every 200 ms; 30 s covers a loaded machine.
	st := waitPhase(t, ws[0], "o", warmup.Done, 30*time.Second)
	counts := log.counts()
	assert.Len(t, counts, n, "no key lost")
	for k, v := range counts {
		assert.Equal(t, 1, v, k)
	}
	assert.EqualValues(t, n, st.Done)
}
