package retry

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBudgetConfig(t *testing.T) {
	for _, c := range []struct {
		max   int
		ratio float64
		msg   string
	}{
		{0, 0.1, "maxTokens"},
		{-1, 0.1, "maxTokens"},
		{1 << 33, 0.1, "maxTokens"},
		{10, 0, "tokenRatio"},
		{10, -1, "tokenRatio"},
		{10, 1e-7, "tokenRatio"},
		{10, 11, "tokenRatio"},
		{10, math.NaN(), "tokenRatio"},
		{10, math.Inf(1), "tokenRatio"},
	} {
		b, err := NewBudget(c.max, c.ratio)
		assert.Nil(t, b)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, c.msg)
	}
	b, err := NewBudget(10, 0.1)
	require.NoError(t, err)
	assert.Equal(t, 10.0, b.Tokens())
	assert.True(t, b.Allow())
}

// requestWithRetries makes one request of up to maxAttempts attempts, each
// failing when fail() says so, retrying only when the budget allows. It
// returns the retries made and whether the request succeeded.
func requestWithRetries(b *Budget, maxAttempts int, fail func() bool) (retries int, ok bool) {
	for attempt := 0; ; attempt++ {
		if !fail() {
			b.RecordSuccess()
			return retries, true
		}
		if !b.RecordFailure() || attempt+1 == maxAttempts {
			return retries, false
		}
		retries++
	}
}

// TestBudgetTotalFailure: under 100% failure the retries over a whole
// outage are at most maxTokens/2, whatever the traffic: the retry fraction
// tends to zero instead of multiplying the load by maxAttempts.
func TestBudgetTotalFailure(t *testing.T) {
	b, err := NewBudget(10, 0.1)
	require.NoError(t, err)
	const requests = 10_000
	retries := 0
	for range requests {
		r, ok := requestWithRetries(b, 5, func() bool { return true })
		require.False(t, ok)
		retries += r
	}
	// Tokens go 10 → 9, 8, 7, 6 (a retry allowed after each: > 5) → 5 (no
	// more). Without the budget: 4 retries per request, 40,000.
	assert.Equal(t, 4, retries)
	assert.LessOrEqual(t, float64(retries), 10.0/2)
	t.Logf("retry fraction under total failure: %d / %d attempts", retries, requests+retries)
	assert.Zero(t, b.Tokens())
	assert.False(t, b.Allow())

	// Recovery: each success gives back 0.1 token; retries return once
	// more than 5 tokens are back, after 51 successes.
	for i := 1; i <= 50; i++ {
		b.RecordSuccess()
		require.False(t, b.Allow(), "after %d successes", i)
	}
	b.RecordSuccess()
	assert.True(t, b.Allow(), "after 51 successes")
	assert.InDelta(t, 5.1, b.Tokens(), 1e-9)
	for range 1000 {
		b.RecordSuccess()
	}
	assert.Equal(t, 10.0, b.Tokens(), "capped at maxTokens")
}

// TestBudgetPartialFailure checks the documented bound, retries <=
// maxTokens/2 + tokenRatio × successes, at several failure rates. (With
// tokenRatio 0.1 the budget sustains retries only below a failure rate of
// about 0.1/1.1 ≈ 9%, as gRPC's does; above it, retries dry up.)
func TestBudgetPartialFailure(t *testing.T) {
	for _, p := range []float64{0.02, 0.1, 0.5, 0.9} {
		b, err := NewBudget(100, 0.1)
		require.NoError(t, err)
		rng := seeded(uint64(p * 100))
		fail := func() bool { return rng.Float64() < p }
		const requests = 100_000
		retries, successes := 0, 0
		for range requests {
			r, ok := requestWithRetries(b, 3, fail)
			retries += r
			if ok {
				successes++ // a request succeeds at most once
			}
		}
		bound := 100/2 + 0.1*float64(successes)
		t.Logf("failure rate %.0f%%: %d retries for %d requests (%.1f%%), bound %.0f", p*100, retries, requests, 100*float64(retries)/requests, bound)
		assert.LessOrEqual(t, float64(retries), bound)
		assert.Positive(t, retries, "retries still happen while there is budget")
		if p < 0.05 {
			assert.GreaterOrEqual(t, float64(retries), 0.9*p*requests, "a healthy service keeps nearly all its retries")
		}
	}
}

// TestBudgetConcurrent: concurrent failures from a full budget leave
// the counts exact, whatever the interleaving: each failure takes one token,
// and exactly the failures that left more than half were allowed a retry.
func TestBudgetConcurrent(t *testing.T) {
	b, err := NewBudget(1000, 0.5)
	require.NoError(t, err)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if b.RecordFailure() {
					allowed.Add(1)
				}
				_ = b.Allow()
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, b.Tokens(), "1600 failures empty 1000 tokens, and stop at zero")
	assert.Equal(t, int64(499), allowed.Load(), "failures leaving 999 … 501 tokens")

	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				b.RecordSuccess()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1000.0, b.Tokens(), "4000 successes × 0.5 refill it, capped")
}

func BenchmarkBudget(b *testing.B) {
	rb, _ := NewBudget(1000, 0.1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if i&3 == 0 {
				rb.RecordFailure()
			} else {
				rb.RecordSuccess()
			}
			i++
		}
	})
}
