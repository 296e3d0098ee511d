package httpmw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

// apiKey keys a request by its X-Api-Key, or ErrNoKey without one.
func apiKey(r *http.Request) (string, error) {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return "key:" + k, nil
	}
	return "", fmt.Errorf("no X-Api-Key: %w", ErrNoKey)
}

var alice = http.Header{"X-Api-Key": {"alice"}}

// TestSeveralPolicies: one middleware with several policies asks every
// budget, lists every policy, and refuses on the most restrictive.
func TestSeveralPolicies(t *testing.T) {
	clk := newManualClock()
	perIP, perKey := newLocal(t, limiter.PerSecond(1, 5), clk), newLocal(t, limiter.PerSecond(1, 2), clk)
	next := &okHandler{}
	srv := serve(t, next, RateLimitConfig{}, Policy{Name: "ip", Budget: perIP}, Policy{Name: "key", Budget: perKey, Key: apiKey})

	for i := 1; i <= 2; i++ {
		res := get(t, srv, alice)
		require.Equal(t, http.StatusOK, res.status)
		assert.Equal(t, []string{`"ip";q=5;w=5`, `"key";q=2;w=2`}, res.header.Values("RateLimit-Policy"))
		assert.Equal(t, []string{fmt.Sprintf(`"ip";r=%d;t=%d, "key";r=%d;t=%d`, 5-i, i, 2-i, i)}, res.header.Values("RateLimit"))
	}
	res := get(t, srv, alice)
	require.Equal(t, http.StatusTooManyRequests, res.status, "the per-key policy is spent")
	assert.Equal(t, "1", res.retryAfter)
	assert.Equal(t, `"ip";r=2;t=3, "key";r=0;t=1`, res.rateLimit, "the per-IP budget was asked too, and took its token")
	assert.EqualValues(t, 2, next.served.Load())

	res = get(t, srv, nil)
	assert.Equal(t, http.StatusBadRequest, res.status, "no key for one policy: nothing is asked")
	d, err := perIP.AllowN(t.Context(), "127.0.0.1", 0)
	require.NoError(t, err)
	assert.Equal(t, 2, d.Remaining)
}

// TestStackedMiddlewares: two RateLimit middlewares, one inside the other,
// produce one list holding both: each adds its field lines, neither
// overwrites the other's, and the legacy fields report the tighter one.
func TestStackedMiddlewares(t *testing.T) {
	clk := newManualClock()
	outer, err := RateLimit(RateLimitConfig{LegacyHeaders: true}, Policy{Name: "ip", Budget: newLocal(t, limiter.PerSecond(1, 3), clk)})
	require.NoError(t, err)
	inner, err := RateLimit(RateLimitConfig{LegacyHeaders: true}, Policy{Name: "key", Budget: newLocal(t, limiter.PerSecond(1, 10), clk), Key: apiKey})
	require.NoError(t, err)
	next := &okHandler{}
	srv := httptest.NewServer(outer(inner(next)))
	t.Cleanup(srv.Close)

	res := get(t, srv, alice)
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, []string{`"ip";q=3;w=3`, `"key";q=10;w=10`}, res.header.Values("RateLimit-Policy"))
	assert.Equal(t, []string{`"ip";r=2;t=1`, `"key";r=9;t=1`}, res.header.Values("RateLimit"))
	assert.Equal(t, "3", res.header.Get("X-RateLimit-Limit"), "the tighter policy: ip, 2 left")
	assert.Equal(t, "2", res.header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, "1", res.header.Get("X-RateLimit-Reset"))

	require.Equal(t, http.StatusOK, get(t, srv, alice).status)
	require.Equal(t, http.StatusOK, get(t, srv, alice).status)
	res = get(t, srv, alice)
	require.Equal(t, http.StatusTooManyRequests, res.status, "the outer policy refuses")
	assert.Equal(t, []string{`"ip";r=0;t=1`}, res.header.Values("RateLimit"), "refused outside: the inner one never ran")
	assert.Equal(t, "0", res.header.Get("X-RateLimit-Remaining"))

	// The inner one refuses: the outer's lines stay on the 429.
	clk.Add(time.Hour)
	inner2, err := RateLimit(RateLimitConfig{LegacyHeaders: true}, Policy{Name: "key", Budget: newLocal(t, limiter.PerSecond(1, 1), clk), Key: apiKey})
	require.NoError(t, err)
	srv2 := httptest.NewServer(outer(inner2(next)))
	t.Cleanup(srv2.Close)
	require.Equal(t, http.StatusOK, get(t, srv2, alice).status)
	res = get(t, srv2, alice)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, []string{`"ip";q=3;w=3`, `"key";q=1;w=1`}, res.header.Values("RateLimit-Policy"))
	assert.Equal(t, []string{`"ip";r=1;t=2`, `"key";r=0;t=1`}, res.header.Values("RateLimit"))
	assert.Equal(t, "1", res.header.Get("X-RateLimit-Limit"), "the refusing policy is the most restrictive")
}

// TestShadowNeverChangesStatus: a shadow policy that refuses or fails is
// logged and, with ShadowHeaders, reported; the status is never its.
func TestShadowNeverChangesStatus(t *testing.T) {
	clk := newManualClock()
	for _, shadowHeaders := range []bool{false, true} {
		t.Run(fmt.Sprint("ShadowHeaders=", shadowHeaders), func(t *testing.T) {
			var logs syncBuffer
			next := &okHandler{}
			srv := serve(t, next, RateLimitConfig{ShadowHeaders: shadowHeaders, Logger: newTextLogger(&logs)},
				Policy{Name: "ip", Budget: newLocal(t, limiter.PerSecond(1, 100), clk)},
				Policy{Name: "trial", Budget: newLocal(t, limiter.PerSecond(1, 1), clk), Shadow: true},
				Policy{Name: "down", Budget: failingBudget{err: limiter.ErrUnavailable, retryAfter: time.Second}, Shadow: true},
				Policy{Name: "broken", Budget: newLocal(t, limiter.PerSecond(1, 1), clk), Shadow: true,
					Limit: func(*http.Request) (limiter.Limit, error) { panic("plans not loaded") }})
			for i := range 5 {
				res := get(t, srv, nil)
				require.Equal(t, http.StatusOK, res.status, "request %d", i)
				if shadowHeaders {
					assert.Contains(t, res.rateLimit, `"trial";r=0`)
				} else {
					assert.NotContains(t, res.rateLimit, "trial")
				}
				assert.NotContains(t, res.rateLimit, "down", "a failed budget reports nothing")
			}
			assert.EqualValues(t, 5, next.served.Load())
			assert.Contains(t, logs.String(), "shadow policy would refuse")
			assert.Contains(t, logs.String(), "policy=trial")
			assert.Contains(t, logs.String(), "shadow policy's budget failed")
			assert.Contains(t, logs.String(), "shadow policy's limit function failed")
		})
	}
}

func TestSkip(t *testing.T) {
	b := &countingBudget{Budget: newLocal(t, limiter.PerSecond(1, 1), newManualClock())}
	next := &okHandler{}
	srv := serve(t, next, RateLimitConfig{Skip: func(r *http.Request) bool { return r.URL.Path == "/healthz" }}, Policy{Budget: b})
	for range 3 {
		res := getPath(t, srv, "/healthz", nil)
		require.Equal(t, http.StatusOK, res.status)
		assert.Empty(t, res.rateLimit, "a skipped request is not reported")
	}
	assert.Zero(t, b.calls.Load(), "a skipped request asks nothing")
	assert.Equal(t, http.StatusOK, get(t, srv, nil).status)
	assert.Equal(t, http.StatusTooManyRequests, get(t, srv, nil).status)
	assert.EqualValues(t, 4, next.served.Load())
}

// TestIPv6ClientsKeyedBy64 drives real requests through a trusted proxy
// (the test server's peer, 127.0.0.1) for IPv6 clients: by default a /64
// is one bucket; IPv6Prefix and IPv4Prefix change that.
func TestIPv6ClientsKeyedBy64(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	for _, tc := range []struct {
		name   string
		ip     ClientIP
		second string // the second client's address
		shared bool   // whether it shares the first's bucket
	}{
		{"same /64, default", ClientIP{}, "2001:db8:cafe:17::2", true},
		{"other /64, default", ClientIP{}, "2001:db8:cafe:18::1", false},
		{"same /64, keyed by /128", ClientIP{IPv6Prefix: 128}, "2001:db8:cafe:17::2", false},
		{"other /64 in one /48", ClientIP{IPv6Prefix: 48}, "2001:db8:cafe:18::1", true},
		{"IPv4, default /32", ClientIP{}, "203.0.113.8", false},
		{"IPv4 by /24", ClientIP{IPv4Prefix: 24}, "203.0.113.8", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ip.TrustedProxies = []string{"127.0.0.0/8", "::1"}
			b := newLocal(t, limiter.PerSecond(1, 5), newManualClock())
			srv := serve(t, &okHandler{}, RateLimitConfig{ClientIP: tc.ip}, Policy{Budget: b})
			first := "2001:db8:cafe:17::1"
			if !strings.Contains(tc.second, ":") {
				first = "203.0.113.7"
			}
			assert.Equal(t, `"default";r=4;t=1`, get(t, srv, xff(first)).rateLimit)
			want := `"default";r=4;t=1`
			if tc.shared {
				want = `"default";r=3;t=2`
			}
			assert.Equal(t, want, get(t, srv, xff(tc.second)).rateLimit)
		})
	}
	// The peer address itself, as net/http sets it.
	b := newLocal(t, limiter.PerSecond(1, 5), newManualClock())
	mw, err := RateLimit(RateLimitConfig{}, Policy{Budget: b})
	require.NoError(t, err)
	h := mw(&okHandler{})
	for _, remote := range []string{"[2001:db8::1]:1111", "[2001:db8::ffff]:2222"} {
		h.ServeHTTP(httptest.NewRecorder(), &http.Request{RemoteAddr: remote, Header: http.Header{}})
	}
	d, err := b.AllowN(t.Context(), "2001:db8::/64", 0)
	require.NoError(t, err)
	assert.Equal(t, 3, d.Remaining, "both peers drew from their /64's bucket")
}

func TestLegacyHeaders(t *testing.T) {
	clk := newManualClock()
	srv := serve(t, &okHandler{}, RateLimitConfig{LegacyHeaders: true, MaxHeld: -1},
		Policy{Name: "a", Budget: newLocal(t, limiter.PerSecond(1, 10), clk)},
		Policy{Name: "b", Budget: newLocal(t, limiter.PerSecond(0.4, 2), clk)})
	res := get(t, srv, nil)
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, "2", res.header.Get("X-RateLimit-Limit"), "b has the fewest tokens left")
	assert.Equal(t, "1", res.header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, "3", res.header.Get("X-RateLimit-Reset"), "2.5 s to full, rounded up, as RateLimit's t")
	get(t, srv, nil)
	res = get(t, srv, nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, "2", res.header.Get("X-RateLimit-Limit"))
	assert.Equal(t, "0", res.header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, res.retryAfter, res.header.Get("X-RateLimit-Reset"), "Reset is the Retry-After of the refusal")

	srv = serve(t, &okHandler{}, RateLimitConfig{}, Policy{Budget: newLocal(t, limiter.PerSecond(1, 10), clk)})
	assert.Empty(t, get(t, srv, nil).header.Values("X-RateLimit-Limit"), "off by default")
}

// TestLimitFunctionFailures: a per-request limit function that fails,
// panics or returns an invalid limit answers 500, logged naming the
// policy; the server goes on.
func TestLimitFunctionFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit func(*http.Request) (limiter.Limit, error)
		log   string
	}{
		{"error", func(*http.Request) (limiter.Limit, error) { return limiter.Limit{}, errors.New("plan db down") }, "plan db down"},
		{"panic", func(*http.Request) (limiter.Limit, error) { panic("plans not loaded") }, "limit function panicked: plans not loaded"},
		{"invalid limit", func(*http.Request) (limiter.Limit, error) { return limiter.Limit{Rate: 5, Burst: -1}, nil }, "invalid limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			next := &okHandler{}
			srv := serve(t, next, RateLimitConfig{Logger: newTextLogger(&logs)},
				Policy{Name: "per-plan", Budget: newLocal(t, limiter.PerSecond(1, 10), newManualClock()), Limit: tc.limit})
			for range 3 {
				res := get(t, srv, nil)
				assert.Equal(t, http.StatusInternalServerError, res.status)
				assert.Equal(t, "Internal Server Error\n", res.body)
				assert.Empty(t, res.retryAfter, "no retry can succeed")
			}
			assert.Zero(t, next.served.Load())
			assert.Contains(t, logs.String(), "level=ERROR")
			assert.Contains(t, logs.String(), "policy=per-plan")
			assert.Contains(t, logs.String(), tc.log)
		})
	}
}

// TestPerRequestLimit: a limit per plan; each key's bucket refills at its
// requests' limit, and the fields describe it.
func TestPerRequestLimit(t *testing.T) {
	clk := newManualClock()
	plans := map[string]limiter.Limit{"free": limiter.PerSecond(1, 2), "pro": limiter.PerSecond(10, 20)}
	srv := serve(t, &okHandler{}, RateLimitConfig{MaxHeld: -1}, Policy{Name: "plan", Budget: newLocal(t, limiter.PerSecond(1, 1), clk), Key: apiKey,
		Limit: func(r *http.Request) (limiter.Limit, error) { return plans[r.Header.Get("X-Plan")], nil }})
	free := http.Header{"X-Api-Key": {"a"}, "X-Plan": {"free"}}
	pro := http.Header{"X-Api-Key": {"b"}, "X-Plan": {"pro"}}
	res := get(t, srv, free)
	assert.Equal(t, `"plan";q=2;w=2`, res.policy)
	assert.Equal(t, `"plan";r=1;t=1`, res.rateLimit)
	res = get(t, srv, pro)
	assert.Equal(t, `"plan";q=20;w=2`, res.policy)
	assert.Equal(t, `"plan";r=19;t=1`, res.rateLimit)
	get(t, srv, free)
	assert.Equal(t, http.StatusTooManyRequests, get(t, srv, free).status)
	assert.Equal(t, http.StatusOK, get(t, srv, pro).status)
	res = get(t, srv, http.Header{"X-Api-Key": {"c"}})
	assert.Equal(t, `"plan";q=1;w=1`, res.policy, "no plan: the budget's own limit")
}

// TestHoldForPlainClients: a refusal whose wait has a fraction of a second
// is held for it, on the injected clock, and then says the whole seconds
// left; beyond MaxHeld, or for a client that leaves, it is not held. The
// held requests run on goroutines of their own, which only report; every
// assertion is made here, and every wait for them is bounded.
func TestHoldForPlainClients(t *testing.T) {
	budgetClk := newManualClock()
	holdClk := newManualClock()
	// 0.4 tokens a second: after the burst, the wait is 2.5 s.
	b := newLocal(t, limiter.PerSecond(0.4, 1), budgetClk)
	srv := serve(t, &okHandler{}, RateLimitConfig{Clock: holdClk, MaxHeld: 1}, Policy{Budget: b})
	require.Equal(t, http.StatusOK, get(t, srv, nil).status)

	type result struct {
		res response
		err error
	}
	held := make(chan result, 1)
	go func() {
		res, err := fetch(srv, nil)
		held <- result{res, err}
	}()
	require.Eventually(t, func() bool { return holdClk.Pending() == 1 }, 10*time.Second, time.Millisecond, "the refusal is held")

	// MaxHeld is 1: a second refusal is answered at once, rounded up. The
	// denial tail puts it one interval (2.5 s) after the first: 5 s.
	res := get(t, srv, nil)
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, "5", res.retryAfter)
	assert.Equal(t, "5000", res.header.Get(headerRetryAfterMillis))

	select {
	case r := <-held:
		t.Fatalf("answered before the half second passed: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	holdClk.Add(500 * time.Millisecond)
	var r result
	select {
	case r = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held refusal was never answered")
	}
	require.NoError(t, r.err)
	res = r.res
	require.Equal(t, http.StatusTooManyRequests, res.status)
	assert.Equal(t, "2", res.retryAfter, "the whole seconds left after the half second held")
	assert.Equal(t, "2000", res.header.Get(headerRetryAfterMillis))
	assert.Equal(t, `"default";r=0;t=2`, res.rateLimit, "t is the Retry-After sent")

	// A client that leaves ends the hold.
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		res, err := srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return holdClk.Pending() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the canceled request never returned")
	}
	require.Eventually(t, func() bool { return holdClk.Pending() == 0 }, 10*time.Second, time.Millisecond, "the hold's timer is stopped")
}
