package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

func TestUnaryAllowedThenExhausted(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 2))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Unary
	var reached atomic.Int32
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl, countUnary(&reached))))
	req := &healthpb.HealthCheckRequest{}

	for i := range 2 {
		var header metadata.MD
		resp, err := c.Check(t.Context(), req, grpc.Header(&header))
		require.NoError(t, err, "call %d", i)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
		assert.NotEmpty(t, header, "an allowed call gets a header frame")
	}

	var header, trailer metadata.MD
	start := time.Now()
	_, err := c.Check(t.Context(), req, grpc.Header(&header), grpc.Trailer(&trailer))
	elapsed := time.Since(start)
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "status %v", st)
	assert.Contains(t, st.Message(), "rate limit exceeded")
	delay := retryInfo(t, err)
	// Two tokens were taken from a bucket refilling one per hour, so the
	// wait is an hour less the time since the first take. One minute of
	// slack is far more than a loaded CI machine needs for three calls.
	assert.LessOrEqual(t, delay, time.Hour)
	assert.Greater(t, delay, time.Hour-time.Minute-elapsed)
	assert.Equal(t, ceilMillis(delay), pushback(t, trailer))
	// Trailers-Only: the status came in the only header frame, so the
	// client saw no response header (an allowed call does, above).
	assert.Empty(t, header)
	assert.EqualValues(t, 2, reached.Load(), "the denied call must not reach the handler")
}

func TestStreamAllowedThenExhausted(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Stream
	var reached atomic.Int32
	c := dialHealth(t, startHealth(t, grpc.ChainStreamInterceptor(rl, countStream(&reached))))
	req := &healthpb.HealthCheckRequest{}

	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Watch(ctx, req)
	require.NoError(t, err)
	resp, err := s.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	cancel()

	s, err = c.Watch(t.Context(), req)
	require.NoError(t, err)
	_, err = s.Recv()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "err %v", err)
	delay := retryInfo(t, err)
	assert.LessOrEqual(t, delay, time.Hour)
	assert.Greater(t, delay, 59*time.Minute) // see the unary test for the slack
	assert.Equal(t, ceilMillis(delay), pushback(t, s.Trailer()))
	header, _ := s.Header()
	assert.Empty(t, header, "Trailers-Only: no response header")
	assert.EqualValues(t, 1, reached.Load(), "the denied stream must not reach the handler")
}

// TestRetryPolicyHonoursPushback shows that a grpc-go client with a retry
// policy waits for the pushback the server sent, then succeeds.
func TestRetryPolicyHonoursPushback(t *testing.T) {
	const interval = time.Second // one token per second, burst 1
	b := newLocal(t, limiter.Every(interval, 1))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Unary

	type attempt struct {
		at    time.Time
		code  codes.Code
		delay time.Duration
	}
	var (
		mu       sync.Mutex
		attempts []attempt
	)
	// record sits before the rate limit: it sees each attempt arrive and
	// what the rate limit answered.
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		a := attempt{at: time.Now()}
		resp, err := h(ctx, req)
		a.code = status.Code(err)
		if err != nil {
			a.delay = retryInfo(t, err)
		}
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
		return resp, err
	}
	addr := startHealth(t, grpc.ChainUnaryInterceptor(record, rl))

	// The client's own backoff is 1ms: had it ignored the pushback, its
	// second and third attempts would arrive within milliseconds, be
	// denied, and the call would fail.
	const serviceConfig = `{"methodConfig": [{
		"name": [{"service": "grpc.health.v1.Health"}],
		"retryPolicy": {
			"maxAttempts": 3,
			"initialBackoff": "0.001s",
			"maxBackoff": "0.001s",
			"backoffMultiplier": 1,
			"retryableStatusCodes": ["RESOURCE_EXHAUSTED"]
		}
	}]}`
	c := dialHealth(t, addr, grpc.WithDefaultServiceConfig(serviceConfig))

	// Spend the token under the client's key, so that the first attempt
	// is denied with a pushback of nearly the whole interval.
	d, err := b.AllowN(t.Context(), "127.0.0.1", 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)

	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "the retry after the pushback should succeed")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, 2, "one denied attempt and one allowed retry: %+v", attempts)
	require.Equal(t, codes.ResourceExhausted, attempts[0].code)
	require.Equal(t, codes.OK, attempts[1].code)
	pb := time.Duration(ceilMillis(attempts[0].delay)) * time.Millisecond
	require.Greater(t, pb, 10*time.Millisecond, "the pushback must dwarf the 1ms backoff for the test to mean anything")
	// A lower bound only: load can delay the retry's arrival, never
	// advance it, so this cannot flake.
	gap := attempts[1].at.Sub(attempts[0].at)
	assert.GreaterOrEqual(t, gap, pb, "the client retried before the pushback of %v", pb)
}

func TestDefaultKeyIsPeerIP(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Unary
	addr := startHealth(t, grpc.ChainUnaryInterceptor(rl))
	one := dialHealth(t, addr, fromSource(net.IPv4(127, 0, 0, 1)))
	two := dialHealth(t, addr, fromSource(net.IPv4(127, 0, 0, 2)))
	req := &healthpb.HealthCheckRequest{}

	_, err := one.Check(t.Context(), req)
	require.NoError(t, err)
	_, err = one.Check(t.Context(), req)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "127.0.0.1 spent its token")
	_, err = two.Check(t.Context(), req)
	assert.NoError(t, err, "127.0.0.2 has a bucket of its own")

	for _, key := range []string{"127.0.0.1", "127.0.0.2"} {
		d, err := b.AllowN(t.Context(), key, 0) // peek
		require.NoError(t, err)
		assert.Zero(t, d.Remaining, "bucket %q should be spent", key)
	}
	assert.Equal(t, 2, b.Stats().Keys)
}

// TestPeerPrefixes: RateLimitConfig's prefixes key clients by their
// prefix, over real grpc-go connections from two loopback hosts; Admit's
// and Invalidate's default key (for a client without herdcap-client) by
// theirs.
func TestPeerPrefixes(t *testing.T) {
	req := &healthpb.HealthCheckRequest{}
	for _, tc := range []struct {
		name   string
		cfg    RateLimitConfig
		shared bool
		key    string
	}{
		{"default: by address", RateLimitConfig{LimitHealth: true}, false, "127.0.0.1"},
		{"by /24", RateLimitConfig{LimitHealth: true, IPv4Prefix: 24}, true, "127.0.0.0/24"},
		{"IPv6 prefix leaves IPv4 alone", RateLimitConfig{LimitHealth: true, IPv6Prefix: 128}, false, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newLocal(t, limiter.Every(time.Hour, 1))
			rl := mustRateLimit(t, tc.cfg, Policy{Budget: b}).Unary
			addr := startHealth(t, grpc.ChainUnaryInterceptor(rl))
			one := dialHealth(t, addr, fromSource(net.IPv4(127, 0, 0, 1)), grpc.WithDisableRetry())
			two := dialHealth(t, addr, fromSource(net.IPv4(127, 0, 0, 2)), grpc.WithDisableRetry())
			_, err := one.Check(t.Context(), req)
			require.NoError(t, err)
			_, err = two.Check(t.Context(), req)
			if tc.shared {
				assert.Equal(t, codes.ResourceExhausted, status.Code(err), "127.0.0.2 shares 127.0.0.1's /24")
			} else {
				assert.NoError(t, err, "127.0.0.2 has a bucket of its own")
			}
			d, err := b.AllowN(t.Context(), tc.key, 0) // peek
			require.NoError(t, err)
			assert.Zero(t, d.Remaining, "bucket %q is spent", tc.key)
		})
	}

	// The same prefixes for every default key, IPv6 too.
	v6 := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("2001:db8:cafe:17::1"), Port: 443}})
	v4 := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443}})
	for _, tc := range []struct {
		v4, v6   int
		want4    string
		want6    string
		viaAdmit bool
	}{
		{0, 0, "203.0.113.7", "2001:db8:cafe:17::/64", false},
		{24, 48, "203.0.113.0/24", "2001:db8:cafe::/48", false},
		{0, 128, "203.0.113.7", "2001:db8:cafe:17::1", true},
		{16, 0, "203.0.0.0/16", "2001:db8:cafe:17::/64", true},
	} {
		var key func(call) (string, error)
		var err error
		if tc.viaAdmit {
			key, err = sessionKey("AdmitConfig", nil, tc.v4, tc.v6)
		} else {
			key, err = peerKeyFunc("RateLimitConfig", tc.v4, tc.v6)
		}
		require.NoError(t, err)
		got, err := key(call{v4, checkMethod})
		require.NoError(t, err)
		assert.Equal(t, tc.want4, got)
		got, err = key(call{v6, checkMethod})
		require.NoError(t, err)
		assert.Equal(t, tc.want6, got)
	}
}

func TestUnavailableOnLimiterError(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	fb := failingBudget{retryAfter: 1500 * time.Microsecond}
	rl := mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: logger}, Policy{Budget: fb})
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary), grpc.ChainStreamInterceptor(rl.Stream)))
	req := &healthpb.HealthCheckRequest{}

	var trailer metadata.MD
	_, err := c.Check(t.Context(), req, grpc.Trailer(&trailer))
	checkUnavailable(t, err, trailer, 1500*time.Microsecond)

	s, err := c.Watch(t.Context(), req)
	require.NoError(t, err)
	_, err = s.Recv()
	checkUnavailable(t, err, s.Trailer(), 1500*time.Microsecond)

	assert.Contains(t, logs.String(), "secret-key", "the budget's error is logged")
	assert.Contains(t, logs.String(), "level=ERROR")
}

// checkUnavailable checks a failed budget's answer: Unavailable, the wait
// in RetryInfo only. A failed budget tells every caller the same wait (a
// breaker's open period), so no pushback: sent as one, it would bring
// plain grpc-go clients (and herdcap's Client, which takes the pushback
// for a slot) back in the same millisecond; RetryInfo is a coarse hint
// that herdcap's Client jitters, and a retry policy's own backoff is
// jittered.
func checkUnavailable(t *testing.T, err error, trailer metadata.MD, delay time.Duration) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "status %v", st)
	assert.NotContains(t, st.Message(), "redis", "internals must not leak")
	assert.NotContains(t, st.Message(), "secret-key", "internals must not leak")
	if delay > 0 {
		assert.Equal(t, delay, retryInfo(t, err))
	}
	assert.Empty(t, trailer.Get(pushbackTrailer), "a failed budget's wait is no turn")
}

// TestUnavailableOnOtherLimiterError uses a real Local budget that has been
// closed: any budget error is Unavailable, and with no RetryAfter from the
// budget, the configured delay is sent.
func TestUnavailableOnOtherLimiterError(t *testing.T) {
	b := newLocal(t, limiter.PerSecond(10, 2))
	require.NoError(t, b.Close())
	for _, tc := range []struct {
		name  string
		cfg   RateLimitConfig
		delay time.Duration
	}{
		{"default delay", limitHealth, time.Second},
		{"configured delay", RateLimitConfig{LimitHealth: true, UnavailableRetryAfter: 3 * time.Second}, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := mustRateLimit(t, tc.cfg, Policy{Budget: b}).Unary
			c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl)))
			var trailer metadata.MD
			_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
			checkUnavailable(t, err, trailer, tc.delay)
		})
	}
}

// TestCostBeyondBurstIsInternal: a cost the budget can never grant is a
// server bug, answered Internal without pushback, so clients do not retry.
func TestCostBeyondBurstIsInternal(t *testing.T) {
	b := newLocal(t, limiter.PerSecond(10, 2))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b, Cost: func(context.Context, string) int { return 5 }}).Unary
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl)))
	var trailer metadata.MD
	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	assert.Equal(t, codes.Internal, st.Code())
	assert.Equal(t, "rate limiter misconfigured", st.Message())
	assert.Empty(t, trailer.Get(pushbackTrailer))
}

// TestKeyFuncErrors: a key function's error ends the call before any
// budget is asked: with InvalidArgument for ErrNoKey, its own status if it
// carries one, else Internal. The log says whose fault it was: the
// client's (Debug) for ErrNoKey and the client-class codes, the server's
// (Error) for the other codes, plain errors and panics.
func TestKeyFuncErrors(t *testing.T) {
	statusKey := func(c codes.Code, msg string) func(context.Context, string) (string, error) {
		return func(context.Context, string) (string, error) { return "", status.Error(c, msg) }
	}
	for _, tc := range []struct {
		name    string
		key     func(context.Context, string) (string, error)
		code    codes.Code
		message string
		log     string // the record, at level
		level   string
	}{
		{
			// The server's fault (issue 10: both transports answer a key
			// function's error alike, 500 / Internal, unless it wraps
			// ErrNoKey); it was InvalidArgument before.
			name:    "plain error",
			key:     func(context.Context, string) (string, error) { return "", errors.New("db lookup of tenant 42 failed") },
			code:    codes.Internal,
			message: "cannot identify the caller for rate limiting",
			log:     "key function failed; answering Internal", level: "ERROR",
		},
		{
			name:    "no key",
			key:     func(context.Context, string) (string, error) { return "", fmt.Errorf("no x-api-key: %w", ErrNoKey) },
			code:    codes.InvalidArgument,
			message: "cannot identify the caller for rate limiting",
			log:     "no usable rate-limit key; answering InvalidArgument", level: "DEBUG",
		},
		{
			name:    "panic",
			key:     func(context.Context, string) (string, error) { panic("tenant table not loaded") },
			code:    codes.Internal,
			message: "cannot identify the caller for rate limiting",
			log:     "key function failed; answering Internal", level: "ERROR",
		},
		{
			name: "status error",
			key: func(context.Context, string) (string, error) {
				return "", status.Error(codes.Unauthenticated, "missing x-api-key")
			},
			code:    codes.Unauthenticated,
			message: "missing x-api-key",
			log:     "no usable rate-limit key; answering Unauthenticated", level: "DEBUG",
		},
		{name: "client-class status: PermissionDenied", key: statusKey(codes.PermissionDenied, "not your tenant"),
			code: codes.PermissionDenied, message: "not your tenant", log: "no usable rate-limit key; answering PermissionDenied", level: "DEBUG"},
		{name: "client-class status: InvalidArgument", key: statusKey(codes.InvalidArgument, "bad x-api-key"),
			code: codes.InvalidArgument, message: "bad x-api-key", log: "no usable rate-limit key; answering InvalidArgument", level: "DEBUG"},
		{name: "client-class status: FailedPrecondition", key: statusKey(codes.FailedPrecondition, "log in first"),
			code: codes.FailedPrecondition, message: "log in first", log: "no usable rate-limit key; answering FailedPrecondition", level: "DEBUG"},
		{name: "client-class status: NotFound", key: statusKey(codes.NotFound, "unknown api key"),
			code: codes.NotFound, message: "unknown api key", log: "no usable rate-limit key; answering NotFound", level: "DEBUG"},
		// Server-class codes: the key store is down or slow. The call ends
		// with the function's status (an Unavailable a client may retry),
		// but the log is the server's, at Error; it was Debug, as if the
		// client's fault.
		{name: "server-class status: Unavailable", key: statusKey(codes.Unavailable, "tenant store down"),
			code: codes.Unavailable, message: "tenant store down", log: "key function failed; answering Unavailable", level: "ERROR"},
		{name: "server-class status: Internal", key: statusKey(codes.Internal, "tenant cache corrupt"),
			code: codes.Internal, message: "tenant cache corrupt", log: "key function failed; answering Internal", level: "ERROR"},
		{name: "server-class status: Unknown", key: statusKey(codes.Unknown, "?"),
			code: codes.Unknown, message: "?", log: "key function failed; answering Unknown", level: "ERROR"},
		{name: "server-class status: DeadlineExceeded, the call's context alive", key: statusKey(codes.DeadlineExceeded, "tenant store slow"),
			code: codes.DeadlineExceeded, message: "tenant store slow", log: "key function failed; answering DeadlineExceeded", level: "ERROR"},
		{name: "server-class status: ResourceExhausted", key: statusKey(codes.ResourceExhausted, "tenant store quota"),
			code: codes.ResourceExhausted, message: "tenant store quota", log: "key function failed; answering ResourceExhausted", level: "ERROR"},
		{
			name:    "empty key", // the server's fault, as above
			key:     func(context.Context, string) (string, error) { return "", nil },
			code:    codes.Internal,
			message: "cannot identify the caller for rate limiting",
			log:     "key function failed; answering Internal", level: "ERROR",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			b := newLocal(t, limiter.Every(time.Hour, 1))
			rl := mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: newDebugLogger(&logs)}, Policy{Budget: b, Key: tc.key})
			var reached atomic.Int32
			c := dialHealth(t, startHealth(t,
				grpc.ChainUnaryInterceptor(rl.Unary, countUnary(&reached)),
				grpc.ChainStreamInterceptor(rl.Stream, countStream(&reached))), grpc.WithDisableRetry())
			req := &healthpb.HealthCheckRequest{}

			_, err := c.Check(t.Context(), req)
			st := status.Convert(err)
			assert.Equal(t, tc.code, st.Code())
			assert.Equal(t, tc.message, st.Message())

			s, err := c.Watch(t.Context(), req)
			require.NoError(t, err)
			_, err = s.Recv()
			st = status.Convert(err)
			assert.Equal(t, tc.code, st.Code())
			assert.Equal(t, tc.message, st.Message())

			assert.Zero(t, reached.Load(), "no call may reach the handler")
			assert.Zero(t, b.Stats().Keys, "the budget must not be consulted")
			assert.Equal(t, tc.level, levelOf(logs.String(), tc.log), "%s", logs.String())
			if tc.level == "DEBUG" {
				assert.NotContains(t, logs.String(), "level=ERROR", "the client's fault is no server error")
			}
		})
	}
}

// levelOf returns the level of the first record in logs that contains
// text, or "".
func levelOf(logs, text string) string {
	for line := range strings.Lines(logs) {
		if strings.Contains(line, text) {
			if _, rest, ok := strings.Cut(line, "level="); ok {
				lvl, _, _ := strings.Cut(rest, " ")
				return lvl
			}
		}
	}
	return ""
}

func TestNoPeerIsInvalidArgument(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Unary
	called := false
	_, err := rl(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: checkMethod},
		func(context.Context, any) (any, error) { called = true; return nil, nil })
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.False(t, called)
}

func TestSkip(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, RateLimitConfig{LimitHealth: true, Skip: func(m string) bool { return m == checkMethod }}, Policy{Budget: b})
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary), grpc.ChainStreamInterceptor(rl.Stream)))
	req := &healthpb.HealthCheckRequest{}

	for i := range 3 {
		_, err := c.Check(t.Context(), req)
		require.NoError(t, err, "skipped call %d", i)
	}
	assert.Zero(t, b.Stats().Keys, "skipped calls take nothing")

	// Watch is not skipped: one stream, then the limit.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := c.Watch(ctx, req)
	require.NoError(t, err)
	_, err = s.Recv()
	require.NoError(t, err)
	s, err = c.Watch(ctx, req)
	require.NoError(t, err)
	_, err = s.Recv()
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
}

func TestCost(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 3))
	var methods []string
	var mu sync.Mutex
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b, Cost: func(_ context.Context, m string) int {
		mu.Lock()
		methods = append(methods, m)
		mu.Unlock()
		return 2
	}}).Unary
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl)))
	req := &healthpb.HealthCheckRequest{}

	_, err := c.Check(t.Context(), req)
	require.NoError(t, err)
	d, err := b.AllowN(t.Context(), "127.0.0.1", 0)
	require.NoError(t, err)
	assert.Equal(t, 1, d.Remaining, "the call took 2 of 3 tokens")
	_, err = c.Check(t.Context(), req)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "2 tokens wanted, 1 left")
	mu.Lock()
	assert.Equal(t, []string{checkMethod, checkMethod}, methods)
	mu.Unlock()
}

func TestDenialIsLoggedAtDebug(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: logger},
		Policy{Budget: b, Key: func(context.Context, string) (string, error) { return "tenant-7", nil }}).Unary
	ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}})
	info := &grpc.UnaryServerInfo{FullMethod: checkMethod}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	_, err := rl(ctx, nil, info, ok)
	require.NoError(t, err)
	assert.Empty(t, logs.String(), "an allowed call logs nothing")
	_, err = rl(ctx, nil, info, ok)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, codes.ResourceExhausted, e.Code)
	assert.ErrorIs(t, err, ErrRateLimited)
	assert.Contains(t, logs.String(), "level=DEBUG")
	assert.Contains(t, logs.String(), "key=tenant-7")
}

func TestBadConfig(t *testing.T) {
	b := newLocal(t, limiter.PerSecond(1, 1))
	var nilLocal *limiter.Local
	for _, tc := range []struct {
		name     string
		cfg      RateLimitConfig
		policies []Policy
		want     string
	}{
		{"no policy", RateLimitConfig{}, nil, "no Policy given"},
		{"nil budget", RateLimitConfig{}, []Policy{{}}, "Policy[0].Budget is nil"},
		{"typed nil budget", RateLimitConfig{}, []Policy{{Budget: b}, {Name: "x", Budget: nilLocal}}, "Policy[1].Budget is nil"},
		{"duplicate name", RateLimitConfig{}, []Policy{{Budget: b}, {Budget: b}}, `Policy[1].Name "default" is Policy[0]'s too`},
		{"bad name", RateLimitConfig{}, []Policy{{Name: "a\x00", Budget: b}}, "Policy[0].Name"},
		{"negative unavailable delay", RateLimitConfig{UnavailableRetryAfter: -time.Second}, []Policy{{Budget: b}},
			"grpcmw: invalid config: RateLimitConfig.UnavailableRetryAfter must be >= 0 (0 means 1s), got -1s"},
		{"IPv4 prefix too long", RateLimitConfig{IPv4Prefix: 33}, []Policy{{Budget: b}}, "grpcmw: invalid config: RateLimitConfig.IPv4Prefix must be 0 (32) or 1 to 32, got 33"},
		{"negative IPv6 prefix", RateLimitConfig{IPv6Prefix: -1}, []Policy{{Budget: b}}, "grpcmw: invalid config: RateLimitConfig.IPv6Prefix must be 0 (64) or 1 to 128, got -1"},
		{"prefixes with every policy keyed", RateLimitConfig{IPv6Prefix: 48}, []Policy{{Budget: b, Key: func(context.Context, string) (string, error) { return "k", nil }}},
			"grpcmw: invalid config: RateLimitConfig.IPv4Prefix or IPv6Prefix is set, but every Policy has its own Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RateLimit(tc.cfg, tc.policies...)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorContains(t, err, tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "grpcmw: invalid config: "), err.Error())
			l, err := NewLimiter(tc.cfg, tc.policies...)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorContains(t, err, tc.want)
			assert.Nil(t, l)
		})
	}
}

func BenchmarkUnaryServerRateLimit(b *testing.B) {
	budget, err := limiter.NewLocal(limiter.PerSecond(1e12, 1e12), limiter.Config{}) // never denies
	require.NoError(b, err)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}})
	info := &grpc.UnaryServerInfo{FullMethod: checkMethod}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	constKey := func(context.Context, string) (string, error) { return "tenant-7", nil }

	for _, bc := range []struct {
		name   string
		policy Policy
	}{
		{"PeerIP", Policy{Budget: budget}},
		{"ConstKey", Policy{Budget: budget, Key: constKey}},
	} {
		rl := mustRateLimit(b, limitHealth, bc.policy).Unary
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rl(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := rl(ctx, nil, info, handler); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestRedisFailClosedIsUnavailable runs the real thing: a Redis budget that
// fails closed, in front of a private redis-server that is then killed.
func TestRedisFailClosedIsUnavailable(t *testing.T) {
	s := redistest.Start(t)
	b, err := fleet.NewStrict(fleet.Redis{Client: s.Client(t), BreakerFailures: 1, BreakerOpen: 2 * time.Second, Timeout: time.Second}, limiter.PerSecond(10, 10),
		fleet.Config{Failure: fleet.FailClosed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	rl := mustRateLimit(t, limitHealth, Policy{Budget: b}).Unary
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl)))
	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	s.Kill(t)
	var trailer metadata.MD
	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	checkUnavailable(t, err, trailer, 0)
	// Come back when the breaker lets a probe through: after BreakerOpen,
	// within a second one (should the budget spread it).
	assert.GreaterOrEqual(t, retryInfo(t, err), 2*time.Second)
	assert.LessOrEqual(t, retryInfo(t, err), 4*time.Second)
	assert.NotContains(t, status.Convert(err).Message(), s.Addr())
}

// TestLimitFunctionFailures: a per-call limit function that fails, panics
// or returns an invalid limit ends the call with codes.Internal, without
// pushback, logged naming the policy; the server goes on.
func TestLimitFunctionFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit func(context.Context, string) (limiter.Limit, error)
		log   string
	}{
		{"error", func(context.Context, string) (limiter.Limit, error) {
			return limiter.Limit{}, errors.New("plan db down")
		}, "plan db down"},
		{"panic", func(context.Context, string) (limiter.Limit, error) { panic("plans not loaded") }, "limit function panicked: plans not loaded"},
		{"invalid limit", func(context.Context, string) (limiter.Limit, error) { return limiter.Limit{Rate: 5, Burst: -1}, nil }, "invalid limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			rl := mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: newDebugLogger(&logs)},
				Policy{Name: "per-plan", Budget: newLocal(t, limiter.PerSecond(1, 10)), Limit: tc.limit})
			var reached atomic.Int32
			c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary, countUnary(&reached)),
				grpc.ChainStreamInterceptor(rl.Stream, countStream(&reached))))
			for range 2 {
				var trailer metadata.MD
				_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
				st := status.Convert(err)
				assert.Equal(t, codes.Internal, st.Code(), "%v", st)
				assert.Equal(t, "rate limiter misconfigured", st.Message())
				assert.Empty(t, trailer.Get(pushbackTrailer), "no retry can succeed")
			}
			s, err := c.Watch(t.Context(), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			_, err = s.Recv()
			assert.Equal(t, codes.Internal, status.Code(err))
			assert.Zero(t, reached.Load())
			assert.Contains(t, logs.String(), "level=ERROR")
			assert.Contains(t, logs.String(), "policy=per-plan")
			assert.Contains(t, logs.String(), "method=/grpc.health.v1.Health/")
			assert.Contains(t, logs.String(), tc.log)
		})
	}
}

// TestSeveralPolicies: every policy's budget is asked for every call, and
// the most restrictive refusal decides; a shadow policy never refuses.
func TestSeveralPolicies(t *testing.T) {
	perIP, perTenant, trial := newLocal(t, limiter.Every(time.Hour, 5)), newLocal(t, limiter.Every(time.Minute, 2)), newLocal(t, limiter.Every(time.Hour, 1))
	tenant := func(context.Context, string) (string, error) { return "tenant-7", nil }
	rl := mustRateLimit(t, limitHealth, Policy{Name: "ip", Budget: perIP}, Policy{Name: "tenant", Budget: perTenant, Key: tenant},
		Policy{Name: "trial", Budget: trial, Shadow: true})
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary)))
	for range 2 {
		_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err, "the shadow policy's refusal of the second call changes nothing")
	}
	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	// The tenant's next token is a minute away: the refusal says so.
	assert.Greater(t, retryInfo(t, err), 59*time.Second)
	assert.LessOrEqual(t, retryInfo(t, err), time.Minute)
	d, err := perIP.AllowN(t.Context(), "127.0.0.1", 0)
	require.NoError(t, err)
	assert.Equal(t, 2, d.Remaining, "the per-IP budget was asked by the refused call too")
}
