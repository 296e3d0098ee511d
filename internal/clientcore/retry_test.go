package clientcore

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/retry"
)

// half makes every jitter draw 0.5, so that every delay is exact: full
// jitter is half the window, a hint's jitter half its window.
func half() float64 { return 0.5 }

func TestRetrierDefaults(t *testing.T) {
	r, err := NewRetrier(retry.Policy{})
	require.NoError(t, err)
	assert.Equal(t, 4, r.maxAttempts, "retry.Policy's MaxAttempts 0: 4")
	assert.Equal(t, 30*time.Second, r.maxWait, "retry.Policy's MaxWait 0: 30 s")
	c, err := New(Config{})
	require.NoError(t, err)
	assert.Equal(t, 10.0, c.budget.Tokens(), "retry.Policy's Budget nil: 10 tokens")
	c.budget.RecordFailure()
	c.Succeeded()
	assert.InDelta(t, 9.1, c.budget.Tokens(), 1e-9, "0.1 back per success")
	other, err := New(Config{})
	require.NoError(t, err)
	assert.NotSame(t, c.budget, other.budget, "a budget per client")
	b, err := retry.NewBudget(3, 1)
	require.NoError(t, err)
	shared, err := New(Config{Retry: retry.Policy{Budget: b}})
	require.NoError(t, err)
	assert.Same(t, b, shared.budget)
}

// TestDecide runs the retry decision over every hint kind and bound, on a
// Backoff whose draws are all 0.5 (Base 100 ms, Cap 1 s, default jitters:
// a coarse hint gets 10% of it, at most 1 s; a slot 5 ms).
func TestDecide(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name    string
		policy  retry.Policy // Backoff's Base, Cap and Rand are set below
		tokens  int          // the budget's size; 0: 10
		attempt int
		waited  time.Duration
		hint    Hint
		resend  bool
		want    time.Duration
		ok      bool
	}{
		{"no hint: full jitter", retry.Policy{}, 0, 0, 0, Hint{}, true, 50 * ms, true},
		{"no hint, third retry: a window of 400 ms", retry.Policy{}, 0, 2, 0, Hint{}, true, 200 * ms, true},
		{"no hint past the cap", retry.Policy{MaxAttempts: 100}, 0, 40, 0, Hint{}, true, 500 * ms, true},
		{"connection fault: full jitter", retry.Policy{}, 0, 1, 0, Hint{Kind: Fault}, true, 100 * ms, true},
		{"coarse hint: 10% jitter", retry.Policy{}, 0, 0, 0, Hint{Kind: Coarse, Wait: 2 * time.Second}, true, 2100 * ms, true},
		{"coarse hint: jitter at most 1 s", retry.Policy{MaxWait: time.Hour}, 0, 0, 0, Hint{Kind: Coarse, Wait: time.Minute}, true, time.Minute + 500*ms, true},
		{"coarse hint of 0: full jitter", retry.Policy{}, 0, 1, 0, Hint{Kind: Coarse}, true, 100 * ms, true},
		{"exact slot: 5 ms jitter", retry.Policy{}, 0, 0, 0, Hint{Kind: Slot, Wait: 864 * ms}, true, 864*ms + 2500*time.Microsecond, true},
		{"exact slot wins over the backoff window", retry.Policy{MaxAttempts: 5}, 0, 3, 0, Hint{Kind: Slot, Wait: 10 * ms}, true, 10*ms + 2500*time.Microsecond, true},
		{"slot of 0: full jitter", retry.Policy{}, 0, 0, 0, Hint{Kind: Slot}, true, 50 * ms, true},
		{"forbidden", retry.Policy{}, 0, 0, 0, Hint{Kind: Forbidden}, true, 0, false},
		{"not safe to send again", retry.Policy{}, 0, 0, 0, Hint{Kind: Slot, Wait: ms}, false, 0, false},
		{"last attempt of the default 4", retry.Policy{}, 0, 3, 0, Hint{}, true, 0, false},
		{"before the last attempt", retry.Policy{}, 0, 2, 0, Hint{}, true, 200 * ms, true},
		{"one attempt: never", retry.Policy{MaxAttempts: 1}, 0, 0, 0, Hint{}, true, 0, false},
		{"hint beyond the default 30 s", retry.Policy{}, 0, 0, 0, Hint{Kind: Coarse, Wait: time.Minute}, true, 0, false},
		{"wait fits exactly in what is left", retry.Policy{MaxWait: time.Second}, 0, 0, 950 * ms, Hint{}, true, 50 * ms, true},
		{"wait just past what is left", retry.Policy{MaxWait: time.Second}, 0, 0, 951 * ms, Hint{}, true, 0, false},
		{"wait bound at the end of time", retry.Policy{MaxWait: math.MaxInt64}, 0, 0, 0, Hint{Kind: Slot, Wait: math.MaxInt64}, true, math.MaxInt64, true},
		{"budget: more than half left after the failure", retry.Policy{}, 3, 0, 0, Hint{}, true, 50 * ms, true},
		{"budget: half left after the failure", retry.Policy{}, 2, 0, 0, Hint{}, true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens := tc.tokens
			if tokens == 0 {
				tokens = 10
			}
			b, err := retry.NewBudget(tokens, 0.5)
			require.NoError(t, err)
			p := tc.policy
			p.Backoff = retry.Backoff{Base: 100 * ms, Cap: time.Second, Rand: half}
			r, err := NewRetrier(p)
			require.NoError(t, err)
			d, ok := r.Decide(b, tc.attempt, tc.waited, tc.hint, tc.resend)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, d)
			assert.InDelta(t, float64(tokens-1), b.Tokens(), 1e-9, "every decision records one failure")
		})
	}
}

// TestDecideBudgetExhaustion: under total failure a client's retries stop
// once its budget is half spent, whatever the attempt bound, and come back
// with successes.
func TestDecideBudgetExhaustion(t *testing.T) {
	c, err := New(Config{Retry: retry.Policy{MaxAttempts: 1000, Backoff: retry.Backoff{Rand: half}}})
	require.NoError(t, err)
	retries := 0
	for call := range 100 {
		for attempt := 0; ; attempt++ {
			if _, ok := c.Decide(attempt, 0, Hint{Kind: Slot, Wait: time.Millisecond}, true); !ok {
				break
			}
			retries++
			require.Less(t, call, 1, "only the first call retries")
		}
	}
	// 10 tokens: failures leave 9, 8, 7, 6 (a retry after each), then 5.
	assert.Equal(t, 4, retries)
	assert.Zero(t, c.budget.Tokens())
	for range 61 {
		c.Succeeded()
	}
	_, ok := c.Decide(0, 0, Hint{}, true)
	assert.True(t, ok, "61 successes (6.1 tokens) leave more than half after one more failure")
}

func TestRetrierRejectsInvalidPolicy(t *testing.T) {
	for _, tc := range []struct {
		p    retry.Policy
		want string
	}{
		{retry.Policy{MaxAttempts: -1}, "Retry.MaxAttempts must be >= 0, got -1"},
		{retry.Policy{MaxWait: -time.Second}, "Retry.MaxWait must be >= 0, got -1s"},
		{retry.Policy{Backoff: retry.Backoff{Base: time.Second, Cap: time.Millisecond}}, "Retry.Backoff.Cap (1ms) must be >= Retry.Backoff.Base (1s)"},
	} {
		_, err := NewRetrier(tc.p)
		assert.ErrorIs(t, err, retry.ErrInvalidConfig)
		assert.EqualError(t, err, tc.want)
		_, err = New(Config{Retry: tc.p})
		assert.EqualError(t, err, tc.want, "New names the field alike")
	}
}
