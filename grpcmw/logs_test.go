package grpcmw

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// downAdmitter fails every decision, as an admission store in an outage.
type downAdmitter struct{}

func (downAdmitter) Admit(context.Context, string, string) (admission.Decision, error) {
	return admission.Decision{Via: limiter.ViaFallback}, errors.New("redis 10.1.2.3:6379: dial timeout")
}

// downSource fails every question, as a coordinator in an outage.
type downSource struct{}

func (downSource) AppendDue(_ context.Context, dst []invalidate.Notice, _ string, _ uint64) ([]invalidate.Notice, error) {
	return dst, invalidate.ErrUnavailable
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
			i, err := UnaryServerRateLimit(failingBudget{}, WithLogger(newDebugLogger(b)))
			require.NoError(t, err)
			return i
		}, nil},
		{"admission", "admission failed", codes.Unavailable, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			i, err := UnaryServerAdmission(downAdmitter{}, WithLogger(newDebugLogger(b)))
			require.NoError(t, err)
			return i
		}, []string{MetadataClient, "c1"}},
		{"coordinator", "coordinator failed", codes.OK, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			i, err := UnaryServerInvalidate(downSource{}, WithLogger(newDebugLogger(b)))
			require.NoError(t, err)
			return i
		}, []string{MetadataEpoch, "0"}},
		{"key function", "key function failed", codes.InvalidArgument, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			i, err := UnaryServerRateLimit(newLocal(t, limiter.PerSecond(1, 1)), WithLogger(newDebugLogger(b)),
				WithKeyFunc(func(context.Context, string) (string, error) { return "", errors.New("session store down") }))
			require.NoError(t, err)
			return i
		}, nil},
		{"malformed metadata", "malformed " + MetadataEpoch, codes.InvalidArgument, func(b *syncBuffer) grpc.UnaryServerInterceptor {
			i, err := UnaryServerInvalidate(downSource{}, WithLogger(newDebugLogger(b)))
			require.NoError(t, err)
			return i
		}, []string{MetadataEpoch, "-1"}},
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
