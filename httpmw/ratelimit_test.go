package httpmw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

func TestAllowedSetsFields(t *testing.T) {
	clk := newManualClock()
	// 1 token/s, burst 10: the bucket refills from empty in 10 s.
	b := newLocal(t, limiter.PerSecond(1, 10), clk)
	next := &okHandler{}
	srv := serve(t, next, RateLimitConfig{}, Policy{Budget: b})

	for i := 1; i <= 3; i++ {
		res := get(t, srv, nil)
		require.Equal(t, http.StatusOK, res.status)
		assert.Equal(t, "ok", res.body)
		assert.Equal(t, `"default";q=10;w=10`, res.policy)
		// i tokens spent: i seconds until full again.
		assert.Equal(t, fmt.Sprintf(`"default";r=%d;t=%d`, 10-i, i), res.rateLimit)
		assert.Empty(t, res.retryAfter, "no Retry-After on an allowed response")
	}
	assert.EqualValues(t, 3, next.served.Load())

	clk.Add(1500 * time.Millisecond) // 1.5 tokens back: 8.5 in the bucket
	res := get(t, srv, nil)
	require.Equal(t, http.StatusOK, res.status)
	// 7.5 left: 2.5 s to full, rounded up to 3.
	assert.Equal(t, `"default";r=7;t=3`, res.rateLimit)
}

func TestPolicyWindowRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		limit limiter.Limit
		want  string
	}{
		{limiter.PerSecond(5, 10), `"default";q=10;w=2`},
		{limiter.PerSecond(3, 10), `"default";q=10;w=4`},   // 3.33 s
		{limiter.PerSecond(100, 1), `"default";q=1;w=1`},   // 10 ms, at least 1
		{limiter.PerMinute(60, 30), `"default";q=30;w=30`}, // 1/s
		{limiter.Every(3*time.Second, 1), `"default";q=1;w=3`},
	} {
		t.Run(tc.limit.String(), func(t *testing.T) {
			srv := serve(t, &okHandler{}, RateLimitConfig{}, Policy{Budget: newLocal(t, tc.limit, newManualClock())})
			res := get(t, srv, nil)
			require.Equal(t, http.StatusOK, res.status)
			assert.Equal(t, tc.want, res.policy)
		})
	}
}

func TestQuotaExceeded(t *testing.T) {
	clk := newManualClock()
	// One token every 2.5 s, burst 2: a denial right after the burst waits
	// 2.5 s, which Retry-After must round up to 3.
	b := newLocal(t, limiter.PerSecond(0.4, 2), clk)
	next := &okHandler{}
	// No hold (MaxHeld < 0): the waits are rounded up to whole seconds,
	// at least 1. TestHoldForPlainClients covers the hold.
	srv := serve(t, next, RateLimitConfig{MaxHeld: -1}, Policy{Budget: b})

	for range 2 {
		require.Equal(t, http.StatusOK, get(t, srv, nil).status)
	}
	res := get(t, srv, nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, "3", res.retryAfter)
	assert.Equal(t, `"default";q=2;w=5`, res.policy)
	assert.Equal(t, `"default";r=0;t=3`, res.rateLimit, "t ends with Retry-After")
	assert.Equal(t, "Too Many Requests\n", res.body)
	assert.Equal(t, "text/plain; charset=utf-8", res.header.Get("Content-Type"))
	assert.Equal(t, "nosniff", res.header.Get("X-Content-Type-Options"))
	assert.EqualValues(t, 2, next.served.Load(), "a denied request must not reach the handler")

	// 100 ms short of a token, but the first refused caller's turn comes
	// first (the denial tail: its token at 2.5 s, this one's 2.5 s later):
	// 2.6 s, sent as 3.
	clk.Add(2400 * time.Millisecond)
	res = get(t, srv, nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, "3", res.retryAfter)
	assert.Equal(t, `"default";r=0;t=3`, res.rateLimit)

	// 100 ms short of a token with no refusal before: the wait is 0.1 s,
	// sent as 1, never 0.
	clk2 := newManualClock()
	srv2 := serve(t, &okHandler{}, RateLimitConfig{MaxHeld: -1}, Policy{Budget: newLocal(t, limiter.PerSecond(0.4, 2), clk2)})
	for range 2 {
		require.Equal(t, http.StatusOK, get(t, srv2, nil).status)
	}
	clk2.Add(2400 * time.Millisecond)
	res2 := get(t, srv2, nil)
	require.Equal(t, http.StatusTooManyRequests, res2.status)
	assert.Equal(t, "1", res2.retryAfter)
	assert.Equal(t, `"default";r=0;t=1`, res2.rateLimit)

	clk.Add(100 * time.Millisecond)
	res = get(t, srv, nil)
	assert.Equal(t, http.StatusOK, res.status)
	assert.EqualValues(t, 3, next.served.Load())
}

func TestLimiterErrorIs503(t *testing.T) {
	const secret = "redis 10.1.2.3:6379: connection refused"
	for _, tc := range []struct {
		name       string
		err        error
		retryAfter time.Duration
		want       string

		unavail time.Duration // RateLimitConfig.UnavailableRetryAfter
	}{
		// The budget's wait, rounded up to whole seconds, and never as
		// Herdcap-Retry-After-Ms: a failed budget tells every caller the
		// same wait (a breaker's open period), which herdcap's Transport
		// must jitter as any Retry-After, not keep as a slot.
		{"fail closed", fmt.Errorf("%w: %s", limiter.ErrUnavailable, secret), 1500 * time.Millisecond, "2", 0},
		{"other error", errors.New(secret), 0, "1", 0},
		{"closed budget", fmt.Errorf("%w (%s)", limiter.ErrClosed, secret), 0, "1", 0},
		{"configured wait", errors.New(secret), 0, "3", 2500 * time.Millisecond},
		{"the budget's wait before the configured one", fmt.Errorf("%w: %s", limiter.ErrUnavailable, secret), 1500 * time.Millisecond, "2", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			next := &okHandler{}
			srv := serve(t, next, RateLimitConfig{Logger: newTextLogger(&logs), UnavailableRetryAfter: tc.unavail},
				Policy{Budget: failingBudget{err: tc.err, retryAfter: tc.retryAfter}})

			res := get(t, srv, nil)
			require.Equal(t, http.StatusServiceUnavailable, res.status)
			assert.Equal(t, tc.want, res.retryAfter)
			assert.Empty(t, res.header.Values(headerRetryAfterMillis), "a failed budget's wait is no turn")
			assert.Equal(t, "Service Unavailable\n", res.body)
			assert.NotContains(t, res.body, "redis", "no internals on the wire")
			for k, vs := range res.header {
				assert.NotContains(t, strings.Join(vs, ","), "10.1.2.3", "header %s leaks the error", k)
			}
			assert.Empty(t, res.rateLimit, "no limit was applied")
			assert.Empty(t, res.policy)
			assert.Zero(t, next.served.Load())
			assert.Contains(t, logs.String(), secret, "the error must be logged")
			assert.Contains(t, logs.String(), "level=ERROR")
		})
	}
}

func TestLimiterErrorLogIsThrottled(t *testing.T) {
	var logs syncBuffer
	srv := serve(t, &okHandler{}, RateLimitConfig{Logger: newTextLogger(&logs)}, Policy{Budget: failingBudget{err: limiter.ErrUnavailable}})
	const n = 20
	for range n {
		require.Equal(t, http.StatusServiceUnavailable, get(t, srv, nil).status)
	}
	// One record per second at most: n requests on a loaded machine may
	// span a few seconds, but never n of them.
	records := strings.Count(logs.String(), "rate limiter failed")
	assert.GreaterOrEqual(t, records, 1)
	assert.Less(t, records, n/2)
}

func TestKeyFuncErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    func(*http.Request) (string, error)
		status int
		logged bool
	}{
		{"no key", func(*http.Request) (string, error) {
			return "", fmt.Errorf("missing X-Api-Key: %w", ErrNoKey)
		}, http.StatusBadRequest, false},
		{"internal", func(*http.Request) (string, error) {
			return "", errors.New("session store down at 10.9.9.9")
		}, http.StatusInternalServerError, true},
		{"empty key", func(*http.Request) (string, error) {
			return "", nil
		}, http.StatusInternalServerError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			b := &countingBudget{Budget: newLocal(t, limiter.PerSecond(1, 1), newManualClock())}
			next := &okHandler{}
			srv := serve(t, next, RateLimitConfig{Logger: newTextLogger(&logs)}, Policy{Budget: b, Key: tc.key})

			res := get(t, srv, nil)
			require.Equal(t, tc.status, res.status)
			assert.Equal(t, http.StatusText(tc.status)+"\n", res.body)
			assert.Zero(t, b.calls.Load(), "the limiter must not be asked")
			assert.Zero(t, next.served.Load())
			assert.Empty(t, res.rateLimit)
			assert.Empty(t, res.retryAfter)
			assert.Equal(t, tc.logged, strings.Contains(logs.String(), "key function failed"))
		})
	}
}

func TestKeyFuncSeparatesBuckets(t *testing.T) {
	b := newLocal(t, limiter.PerSecond(1, 1), newManualClock())
	srv := serve(t, &okHandler{}, RateLimitConfig{}, Policy{Budget: b, Key: func(r *http.Request) (string, error) {
		k := r.Header.Get("X-Api-Key")
		if k == "" {
			return "", ErrNoKey
		}
		return "api:" + k, nil
	}})
	alice := http.Header{"X-Api-Key": {"alice"}}
	bob := http.Header{"X-Api-Key": {"bob"}}
	assert.Equal(t, http.StatusOK, get(t, srv, alice).status)
	assert.Equal(t, http.StatusTooManyRequests, get(t, srv, alice).status)
	assert.Equal(t, http.StatusOK, get(t, srv, bob).status)
	assert.Equal(t, http.StatusBadRequest, get(t, srv, nil).status)
}

func TestCost(t *testing.T) {
	clk := newManualClock()
	b := newLocal(t, limiter.PerSecond(1, 10), clk)
	var logs syncBuffer
	srv := serve(t, &okHandler{}, RateLimitConfig{Logger: newTextLogger(&logs)}, Policy{Budget: b, Cost: func(r *http.Request) int {
		var n int
		_, _ = fmt.Sscan(r.URL.Query().Get("cost"), &n)
		return n
	}})
	res := getPath(t, srv, "/?cost=4", nil)
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, `"default";r=6;t=4`, res.rateLimit)

	res = getPath(t, srv, "/?cost=0", nil) // a peek takes nothing
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, `"default";r=6;t=4`, res.rateLimit)

	res = getPath(t, srv, "/?cost=7", nil) // 6 left
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, `"default";r=6;t=1`, res.rateLimit)
	assert.Equal(t, "1", res.retryAfter)

	for _, bad := range []string{"11", "-1"} { // over the burst, negative: a server bug
		res = getPath(t, srv, "/?cost="+bad, nil)
		require.Equal(t, http.StatusInternalServerError, res.status, "cost %s", bad)
		assert.Empty(t, res.retryAfter, "no retry can succeed")
	}
	assert.Contains(t, logs.String(), "exceeds the burst")
}

func TestPolicyFollowsLimitChanges(t *testing.T) {
	clk := newManualClock()
	b := newLocal(t, limiter.PerSecond(5, 10), clk)
	srv := serve(t, &okHandler{}, RateLimitConfig{}, Policy{Budget: b})
	assert.Equal(t, `"default";q=10;w=2`, get(t, srv, nil).policy)
	require.NoError(t, b.SetLimit(limiter.PerSecond(2, 4)))
	// The limit ramps ((10 * time.Second)) and the policy follows it:
	// halfway, between the two; at the end, the new limit.
	clk.Add((10 * time.Second) / 2)
	assert.Equal(t, `"default";q=7;w=2`, get(t, srv, nil).policy)
	clk.Add((10 * time.Second) / 2)
	assert.Equal(t, `"default";q=4;w=2`, get(t, srv, nil).policy)
}

func TestPolicyName(t *testing.T) {
	b := newLocal(t, limiter.PerSecond(1, 2), newManualClock())
	srv := serve(t, &okHandler{}, RateLimitConfig{}, Policy{Budget: b, Name: `per-ip "v2" \o/`})
	res := get(t, srv, nil)
	assert.Equal(t, `"per-ip \"v2\" \\o/";q=2;w=2`, res.policy)
	assert.Equal(t, `"per-ip \"v2\" \\o/";r=1;t=1`, res.rateLimit)
}

func TestDenyHandler(t *testing.T) {
	var seen []Denial
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := DenialFromContext(r.Context())
		require.True(t, ok)
		seen = append(seen, d)
		// Try to change what the middleware decided: none of it sticks.
		w.Header().Del("Retry-After")
		w.Header().Set("RateLimit", "forged")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, `{"status":%d}`, d.Status)
	})
	clk := newManualClock()
	srv := serve(t, &okHandler{}, RateLimitConfig{Denied: deny}, Policy{Budget: newLocal(t, limiter.PerSecond(1, 1), clk)})
	require.Equal(t, http.StatusOK, get(t, srv, nil).status)
	res := get(t, srv, nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, `{"status":429}`, res.body)
	assert.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	assert.Equal(t, "1", res.retryAfter)
	assert.Equal(t, `"default";r=0;t=1`, res.rateLimit)
	require.Len(t, seen, 1)
	assert.Equal(t, time.Second, seen[0].RetryAfter)
	assert.False(t, seen[0].Decision.Allowed)

	srv = serve(t, &okHandler{}, RateLimitConfig{Denied: deny}, Policy{Budget: failingBudget{err: limiter.ErrUnavailable, retryAfter: 3 * time.Second}})
	res = get(t, srv, nil)
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Equal(t, `{"status":503}`, res.body)
	assert.Equal(t, "3", res.retryAfter)
	assert.Empty(t, res.rateLimit, "the forged field is removed again")
	assert.Equal(t, http.StatusServiceUnavailable, seen[1].Status)
}

func TestDenyHandlerWritingNothing(t *testing.T) {
	silent := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	srv := serve(t, &okHandler{}, RateLimitConfig{Denied: silent}, Policy{Budget: failingBudget{err: limiter.ErrUnavailable}})
	res := get(t, srv, nil)
	assert.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Equal(t, "1", res.retryAfter)
	assert.Empty(t, res.body)
}

func TestDenialFromContextOutsideDenyHandler(t *testing.T) {
	_, ok := DenialFromContext(context.Background())
	assert.False(t, ok)
}

// TestRedisFailClosedIs503 runs the real thing: a Redis budget that fails
// closed, in front of a private redis-server that is then killed.
func TestRedisFailClosedIs503(t *testing.T) {
	s := redistest.Start(t)
	b, err := fleet.NewStrict(fleet.Redis{Client: s.Client(t), BreakerFailures: 1, BreakerOpen: 2 * time.Second, Timeout: time.Second}, limiter.PerSecond(10, 10),
		fleet.Config{Failure: fleet.FailClosed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	var logs syncBuffer
	srv := serve(t, &okHandler{}, RateLimitConfig{Logger: newTextLogger(&logs)}, Policy{Budget: b})
	res := get(t, srv, nil)
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, `"default";r=9;t=1`, res.rateLimit)

	s.Kill(t)
	res = get(t, srv, nil)
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	// Come back when the breaker lets a probe through: after BreakerOpen,
	// within a second one (should the budget spread it); whole seconds
	// only, since a failed budget's wait is no turn of the caller's.
	secs, err := strconv.Atoi(res.retryAfter)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, secs, 2, "come back when the breaker lets a probe through")
	assert.LessOrEqual(t, secs, 4)
	assert.Empty(t, res.header.Values(headerRetryAfterMillis))
	assert.Equal(t, "Service Unavailable\n", res.body)
	assert.NotContains(t, res.body, s.Addr())
	assert.Contains(t, logs.String(), "store unavailable")

	s.Restart(t)
	require.Eventually(t, func() bool { return get(t, srv, nil).status == http.StatusOK },
		15*time.Second, 50*time.Millisecond, "back to normal once Redis is")
}
