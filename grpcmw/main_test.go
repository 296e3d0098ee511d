package grpcmw

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

func TestMain(m *testing.M) {
	// TestRedisFailClosedIsUnavailable kills a redis-server under a client,
	// after which go-redis redials in the background for up to a second.
	goleak.VerifyTestMain(m, redistest.LeakOptions()...)
}

const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

// startHealth serves the standard health service (every service SERVING)
// on a loopback listener and returns its address. The server stops when the
// test ends.
func startHealth(t testing.TB, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// dialHealth returns a health client over a real grpc-go connection to addr,
// closed when the test ends.
func dialHealth(t testing.TB, addr string, opts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// fromSource dials from the given loopback source address, so that one test
// can play several client hosts.
func fromSource(ip net.IP) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		return d.DialContext(ctx, "tcp", addr)
	})
}

func newLocal(t testing.TB, l limiter.Limit) *limiter.Local {
	t.Helper()
	b, err := limiter.NewLocal(l, limiter.Config{})
	require.NoError(t, err)
	return b
}

// countUnary and countStream count the calls that reach the handler; they
// sit after the rate limit in the chain.
func countUnary(n *atomic.Int32) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		n.Add(1)
		return h(ctx, req)
	}
}

func countStream(n *atomic.Int32) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		n.Add(1)
		return h(srv, ss)
	}
}

// retryInfo returns the RetryDelay of the single RetryInfo detail of err.
func retryInfo(t testing.TB, err error) time.Duration {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status error: %v", err)
	var found []time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			found = append(found, ri.GetRetryDelay().AsDuration())
		}
	}
	require.Len(t, found, 1, "want exactly one RetryInfo detail in %v", st.Details())
	return found[0]
}

// pushback returns the grpc-retry-pushback-ms trailer value.
func pushback(t testing.TB, md metadata.MD) int64 {
	t.Helper()
	v := md.Get(pushbackTrailer)
	require.Len(t, v, 1, "want one %s trailer in %v", pushbackTrailer, md)
	ms, err := strconv.ParseInt(v[0], 10, 64)
	require.NoError(t, err)
	return ms
}

// ceilMillis is the pushback a delay should produce.
func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// failingBudget always fails with limiter.ErrUnavailable, as a Redis budget
// under the fail-closed policy does while Redis is away, with an error text
// the tests check never leaks. TestRedisFailClosedIsUnavailable runs the real
// fail-closed path; every other test uses the real limiter.Local.
type failingBudget struct{ retryAfter time.Duration }

func (f failingBudget) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{RetryAfter: f.retryAfter, Via: limiter.ViaFallback},
		fmt.Errorf("redis 10.1.2.3:6379 secret-key: dial timeout: %w", limiter.ErrUnavailable)
}

type syncBuffer = logtest.Buffer

// The configs of tests that serve the health service as their
// application, which the interceptors skip by default.
var (
	limitHealth  = RateLimitConfig{LimitHealth: true}
	admitHealth  = AdmitConfig{LimitHealth: true}
	notifyHealth = InvalidateConfig{NotifyHealth: true}
)

// mustRateLimit, mustAdmit and mustInvalidate build interceptors that the
// test needs.
func mustRateLimit(t testing.TB, cfg RateLimitConfig, p ...Policy) Interceptors {
	t.Helper()
	i, err := RateLimit(cfg, p...)
	require.NoError(t, err)
	return i
}

func mustAdmit(t testing.TB, g *admission.Gate, cfg AdmitConfig) Interceptors {
	t.Helper()
	i, err := Admit(g, cfg)
	require.NoError(t, err)
	return i
}

func mustInvalidate(t testing.TB, c *invalidate.Coordinator, cfg InvalidateConfig) Interceptors {
	t.Helper()
	i, err := Invalidate(c, cfg)
	require.NoError(t, err)
	return i
}
