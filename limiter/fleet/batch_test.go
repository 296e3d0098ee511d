package fleet

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// scriptHook counts the script commands a client sends, alone or inside
// pipelines, and the pipelines.
type scriptHook struct {
	single, piped, pipes, evals atomic.Int64
	biggest                     atomic.Int64
}

func isScript(c redis.Cmder) bool {
	n := strings.ToLower(c.Name())
	return n == "evalsha" || n == "eval"
}

func (h *scriptHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isScript(cmd) {
			h.single.Add(1)
			if strings.EqualFold(cmd.Name(), "eval") {
				h.evals.Add(1)
			}
		}
		return next(ctx, cmd)
	}
}
func (h *scriptHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipes.Add(1)
		n := int64(0)
		for _, c := range cmds {
			if isScript(c) {
				n++
				if strings.EqualFold(c.Name(), "eval") {
					h.evals.Add(1)
				}
			}
		}
		h.piped.Add(n)
		for {
			old := h.biggest.Load()
			if n <= old || h.biggest.CompareAndSwap(old, n) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

// hammer runs workers goroutines making each decisions on keys chosen by
// key, and returns how many were allowed and the Vias seen.
func hammer(t *testing.T, b limiter.Budget, workers, each int, key func(w, i int) string) (allowed int64, sources map[limiter.Via]int64) {
	t.Helper()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		got = map[limiter.Via]int64{}
		ok  atomic.Int64
	)
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			local := map[limiter.Via]int64{}
			for i := range each {
				d, err := b.Take(context.Background(), limiter.Request{Key: key(w, i), N: 1})
				if !assert.NoError(t, err) {
					return
				}
				local[d.Via]++
				if d.Allowed {
					ok.Add(1)
				}
			}
			mu.Lock()
			for s, n := range local {
				got[s] += n
			}
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return ok.Load(), got
}

// Concurrent decisions on one key go out in batches, and the bucket stays
// exact: with no refill to speak of, exactly the burst is admitted, and every
// decision is exactly one script on Redis.
func TestStrictBatchesConcurrentDecisionsExactly(t *testing.T) {
	for _, bc := range []struct {
		name string
		c    func(t *testing.T) redis.UniversalClient
	}{
		{"redis", func(t *testing.T) redis.UniversalClient { return srv.Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return cluster.Client(t) }},
	} {
		t.Run(bc.name, func(t *testing.T) {
			c := bc.c(t)
			// One token a day: no refill during the test.
			b := newStrictForTest(t, c, limiter.Limit{Rate: 1, Period: 24 * time.Hour, Burst: 500}, Redis{}, Config{Failure: FailClosed})
			// A peek at the key loads the script on its master.
			_, err := b.AllowN(context.Background(), "hot", 0)
			require.NoError(t, err)
			h := &scriptHook{}
			c.AddHook(h)

			const workers, each = 64, 40
			allowed, sources := hammer(t, b, workers, each, func(int, int) string { return "hot" })
			assert.Equal(t, int64(500), allowed, "exactly the burst, however the decisions were grouped")
			assert.Equal(t, map[limiter.Via]int64{limiter.ViaRedis: workers * each}, sources)
			assert.Equal(t, int64(workers*each), h.single.Load()+h.piped.Load(), "one script per decision")
			assert.Positive(t, h.pipes.Load(), "64 concurrent callers should have shared round trips")
			assert.LessOrEqual(t, h.biggest.Load(), int64(batchMax))
			t.Logf("%d alone, %d in %d pipelines (largest %d)", h.single.Load(), h.piped.Load(), h.pipes.Load(), h.biggest.Load())
		})
	}
}

// Batches spread over many keys (and, on the cluster, over every master)
// give each key its own exact bucket.
func TestStrictBatchesManyKeys(t *testing.T) {
	c := cluster.Client(t)
	b := newStrictForTest(t, c, limiter.Limit{Rate: 1, Period: 24 * time.Hour, Burst: 3}, Redis{}, Config{Failure: FailClosed})
	const workers, each = 32, 30
	// Worker w asks for key (w*each+i) % 100 : every key is asked for
	// 32*30/100 = 9.6 times, so each admits exactly its burst of 3.
	allowed, sources := hammer(t, b, workers, each, func(w, i int) string { return "k" + strconv.Itoa((w*each+i)%100) })
	assert.Equal(t, int64(100*3), allowed)
	assert.Equal(t, int64(workers*each), sources[limiter.ViaRedis])
}

// A batch whose script Redis has forgotten (SCRIPT FLUSH, a restart) is
// resent with EVAL, and every decision still gets its answer.
func TestRedisBatchReloadsFlushedScript(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	b := newStrictForTest(t, c, limiter.Limit{Rate: 1, Period: 24 * time.Hour, Burst: 1000}, Redis{}, Config{Failure: FailClosed})
	h := &scriptHook{}
	c.AddHook(h)
	for round := range 3 {
		require.NoError(t, c.ScriptFlush(context.Background()).Err())
		allowed, sources := hammer(t, b, 32, 5, func(w, i int) string { return "k" + strconv.Itoa(round) })
		assert.Equal(t, int64(160), allowed, "round %d", round)
		assert.Equal(t, int64(160), sources[limiter.ViaRedis], "round %d", round)
	}
	assert.Positive(t, h.evals.Load(), "the flushed script was sent again with EVAL")
}

// With Redis stalled, queued decisions give up at their own timeout and
// are answered by the failure policy, not held behind the stalled batch; and
// once Redis is back, decisions return to it.
func TestRedisBatchHonoursTheTimeout(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	const timeout = 50 * time.Millisecond
	b, err := NewStrict(Redis{Client: c, Name: uniqueName(), Timeout: timeout, BreakerFailures: 1000, BreakerOpen: time.Hour},
		limiter.PerSecond(1000, 1000), failOpen) // a breaker that never opens: every call waits
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	_, err = b.AllowN(context.Background(), "warm", 1)
	require.NoError(t, err)

	s.Pause(t)
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			d, err := b.AllowN(context.Background(), "k", 1)
			el := time.Since(start)
			for {
				old := slowest.Load()
				if int64(el) <= old || slowest.CompareAndSwap(old, int64(el)) {
					break
				}
			}
			assert.NoError(t, err)
			assert.Equal(t, limiter.ViaFallback, d.Via)
		}()
	}
	wg.Wait()
	s.Resume(t)
	// The timeout is 50 ms; the bound is generous because CI runs this under
	// -race on two loaded cores, where scheduling alone can take tens of
	// milliseconds. What it rules out is waiting behind other batches:
	// 64 callers in 4 round trips at a time would take 16 timeouts.
	assert.Less(t, time.Duration(slowest.Load()), 8*timeout, "no queued decision waits much past its own timeout")

	require.Eventually(t, func() bool {
		d, err := b.AllowN(context.Background(), "k2", 1)
		return err == nil && d.Via == limiter.ViaRedis
	}, 10*time.Second, 20*time.Millisecond)
}

// A budget used by one caller at a time never starts the batch workers.
func TestRedisBatchWorkersStartOnlyWhenNeeded(t *testing.T) {
	b := newStrictForTest(t, srv.Client(t), limiter.PerSecond(1000, 1000), Redis{}, failOpen)
	for range 20 {
		_, err := b.AllowN(context.Background(), "k", 1)
		require.NoError(t, err)
	}
	b.batch.mu.Lock()
	started := b.batch.started
	b.batch.mu.Unlock()
	assert.False(t, started)
}

// Closing the budget with decisions queued answers them with ErrClosed and
// leaves no goroutine behind (goleak checks the package).
func TestRedisBatchClose(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	b, err := NewStrict(Redis{Client: c, Name: uniqueName(), Timeout: time.Second, BreakerFailures: 1000, BreakerOpen: time.Hour},
		limiter.PerSecond(1000, 1000), Config{Failure: FailClosed})
	require.NoError(t, err)
	_, err = b.AllowN(context.Background(), "warm", 1)
	require.NoError(t, err)
	s.Pause(t) // hold the first round trips, so that the rest queue
	var wg sync.WaitGroup
	var closed, other atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.AllowN(context.Background(), "k", 1)
			if assert.Error(t, err) && errors.Is(err, limiter.ErrClosed) {
				closed.Add(1)
			} else {
				other.Add(1)
			}
		}()
	}
	require.Eventually(t, func() bool {
		b.batch.mu.Lock()
		defer b.batch.mu.Unlock()
		return len(b.batch.queue) == 16-batchInFlight
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, b.Close())
	wg.Wait()
	s.Resume(t)
	assert.Equal(t, int64(16-batchInFlight), closed.Load(), "the queued decisions are answered ErrClosed")
	assert.Equal(t, int64(batchInFlight), other.Load(), "those under way end with their round trip (here: unavailable)")
}
