package grpcmw

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// downGate fails every decision: a real gate, closed.
func downGate(t *testing.T) *admission.Gate {
	g := newAdmission(t, limiter.PerSecond(1, 1), admission.Config{})
	require.NoError(t, g.Close())
	return g
}

// downCoordinator fails every question: a real coordinator on a Redis
// store nothing answers for, with nothing cached.
func downCoordinator(t *testing.T) *invalidate.Coordinator {
	store, err := invalidate.NewRedisStore(fleet.Redis{Client: deadRedis(t), Timeout: time.Second})
	require.NoError(t, err)
	c, err := invalidate.NewCoordinator(store, invalidate.Config{})
	require.NoError(t, err)
	return c
}

// TestFailureLogsAreThrottled: in an outage every call fails the same way;
// the log gets about one record a second per interceptor, not one per call,
// and each record says how many it stands for.
func TestFailureLogsAreThrottled(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		code codes.Code
		icpt func(*syncBuffer) grpc.UnaryServerInterceptor
		md   []string
	}{
		{"rate limit", "rate limiter failed", codes.Unavailable, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			return mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: newDebugLogger(b)}, Policy{Budget: failingBudget{}}).Unary
		}, nil},
		{"admission", "admission failed", codes.Unavailable, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			return mustAdmit(t, downGate(t), AdmitConfig{LimitHealth: true, Logger: newDebugLogger(b)}).Unary
		}, []string{metadataClient, "c1"}},
		{"coordinator", "coordinator failed", codes.OK, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			return mustInvalidate(t, downCoordinator(t), InvalidateConfig{NotifyHealth: true, Logger: newDebugLogger(b)}).Unary
		}, []string{metadataEpoch, "0"}},
		// Internal since issue 10 (a key function's own failure is the
		// server's, on both transports); it was InvalidArgument.
		{"key function", "key function failed", codes.Internal, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			return mustRateLimit(t, RateLimitConfig{LimitHealth: true, Logger: newDebugLogger(b)},
				Policy{Budget: newLocal(t, limiter.PerSecond(1, 1)),
					Key: func(context.Context, string) (string, error) { return "", errors.New("session store down") }}).Unary
		}, nil},
		{"malformed metadata", "malformed " + metadataEpoch, codes.InvalidArgument, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			return mustInvalidate(t, downCoordinator(t), InvalidateConfig{NotifyHealth: true, Logger: newDebugLogger(b)}).Unary
		}, []string{metadataEpoch, "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(tc.icpt(&logs))), grpc.WithDisableRetry())
			const n = 20
			for range n {
				ctx := t.Context()
				if tc.md != nil {
					ctx = withMD(ctx, tc.md...)
				}
				_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				require.Equal(t, tc.code, status.Code(err), "%v", err)
			}
			// One record per second at most: n calls on a loaded machine
			// may span a few seconds, but never n/2 of them.
			records := strings.Count(logs.String(), tc.msg)
			assert.GreaterOrEqual(t, records, 1)
			assert.Less(t, records, n/2)
			assert.Contains(t, logs.String(), "suppressed=0", "the first record stands for itself")
		})
	}
}
