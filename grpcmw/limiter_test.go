package grpcmw

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/limiter"
)

// goGRPCMiddlewareLimiter is go-grpc-middleware v2's ratelimit.Limiter;
// Limiter must satisfy it without that module in go.mod.
type goGRPCMiddlewareLimiter interface {
	Limit(ctx context.Context) error
}

var _ goGRPCMiddlewareLimiter = (*Limiter)(nil)

// Stand-ins for go-grpc-middleware v2's ratelimit interceptors, following
// their documented behaviour: any error from Limit becomes
// codes.ResourceExhausted with the error's text in the message. The bench/
// module checks Limiter against the real package.
func ggmUnary(l goGRPCMiddlewareLimiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := l.Limit(ctx); err != nil {
			return nil, status.Errorf(codes.ResourceExhausted, "%s is rejected: %s", info.FullMethod, err)
		}
		return h(ctx, req)
	}
}

func ggmStream(l goGRPCMiddlewareLimiter) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := l.Limit(ss.Context()); err != nil {
			return status.Errorf(codes.ResourceExhausted, "%s is rejected: %s", info.FullMethod, err)
		}
		return h(srv, ss)
	}
}

func TestLimiterDirect(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	var methods []string
	l, err := NewLimiter(RateLimitConfig{}, Policy{Budget: b, Key: func(_ context.Context, m string) (string, error) {
		methods = append(methods, m)
		return "tenant-7", nil
	}})
	require.NoError(t, err)

	require.NoError(t, l.Limit(t.Context()))
	err = l.Limit(t.Context())
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, codes.ResourceExhausted, e.Code)
	assert.Greater(t, e.RetryAfter, 59*time.Minute) // an hour less a few µs; a minute of slack for a loaded machine
	assert.ErrorIs(t, err, ErrRateLimited)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Equal(t, e.RetryAfter, retryInfo(t, err))
	assert.Equal(t, []string{"", ""}, methods, "no grpc.Method outside a server")
}

func TestLimiterUnavailable(t *testing.T) {
	l, err := NewLimiter(RateLimitConfig{}, Policy{Budget: failingBudget{}, Key: func(context.Context, string) (string, error) { return "k", nil }})
	require.NoError(t, err)
	err = l.Limit(t.Context())
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, codes.Unavailable, e.Code)
	assert.Equal(t, time.Second, e.RetryAfter, "the default UnavailableRetryAfter")
	assert.ErrorIs(t, err, ErrLimiterFailed)
	assert.ErrorIs(t, err, limiter.ErrUnavailable, "the cause stays reachable on the server")
	assert.NotContains(t, err.Error(), "secret-key")
}

// TestLimiterThroughMiddleware serves through the middleware-shaped
// interceptors: the code becomes ResourceExhausted whatever Limit said, but
// the pushback trailer Limit sets still reaches the client Trailers-Only,
// and the message still states the delay.
func TestLimiterThroughMiddleware(t *testing.T) {
	b := newLocal(t, limiter.Every(time.Hour, 1))
	l, err := NewLimiter(RateLimitConfig{LimitHealth: true, Skip: func(m string) bool { return m == checkMethod }}, Policy{Budget: b})
	require.NoError(t, err)
	var reached atomic.Int32
	c := dialHealth(t, startHealth(t,
		grpc.ChainUnaryInterceptor(ggmUnary(l), countUnary(&reached)),
		grpc.ChainStreamInterceptor(ggmStream(l), countStream(&reached))))
	req := &healthpb.HealthCheckRequest{}

	// Check is skipped: grpc.Method(ctx) gave Limit the method name.
	for range 2 {
		_, err := c.Check(t.Context(), req)
		require.NoError(t, err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Watch(ctx, req)
	require.NoError(t, err)
	_, err = s.Recv()
	require.NoError(t, err)
	cancel()

	s, err = c.Watch(t.Context(), req)
	require.NoError(t, err)
	_, err = s.Recv()
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	assert.Contains(t, st.Message(), "rate limit exceeded; retry after")
	ms := pushback(t, s.Trailer())
	assert.Greater(t, ms, int64(59*time.Minute/time.Millisecond)) // a minute of slack, as above
	assert.LessOrEqual(t, ms, int64(time.Hour/time.Millisecond))
	header, _ := s.Header()
	assert.Empty(t, header, "Trailers-Only: no response header")
	assert.EqualValues(t, 3, reached.Load())

	var trailer metadata.MD
	unary, err := NewLimiter(limitHealth, Policy{Budget: b}) // Check not skipped; 127.0.0.1's bucket is spent
	require.NoError(t, err)
	c = dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(ggmUnary(unary))))
	_, err = c.Check(t.Context(), req, grpc.Trailer(&trailer))
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	pushback(t, trailer)
}
