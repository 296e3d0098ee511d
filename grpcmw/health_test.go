package grpcmw

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/limiter"
)

// emptyService answers EmptyCall: an application service beside health.
type emptyService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (emptyService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// serveApp serves the health service (SERVING) and emptyService behind
// the interceptors i, on loopback, and returns a grpc-go client whose
// channel checks the server's health (healthCheckConfig, under
// round_robin, whose pick_first children watch it), as a load
// balancer's clients do.
func serveApp(t *testing.T, i Interceptors) (testgrpc.TestServiceClient, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(i.Unary), grpc.ChainStreamInterceptor(i.Stream))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	testgrpc.RegisterTestServiceServer(srv, emptyService{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}`), grpc.WithDisableRetry())
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return testgrpc.NewTestServiceClient(conn), conn
}

// TestHealthCheckPassesWhileLimited is issue 10's observed failure: a
// grpc-go channel with healthCheckConfig whose client's quota is spent.
// By default the rate limit skips health checking, so the channel stays
// ready and the application's calls are refused for their quota
// (ResourceExhausted, with pushback); with LimitHealth the health check
// itself is refused, and the channel fails every call with
// "pickfirst: health check failure" (Unavailable).
func TestHealthCheckPassesWhileLimited(t *testing.T) {
	for _, tc := range []struct {
		limitHealth bool
		code        codes.Code
		message     string
	}{
		{false, codes.ResourceExhausted, "rate limit exceeded"},
		{true, codes.Unavailable, "health check failure"},
	} {
		t.Run(map[bool]string{false: "default", true: "LimitHealth"}[tc.limitHealth], func(t *testing.T) {
			b := newLocal(t, limiter.Every(time.Hour, 1))
			// Spend the client's quota before its channel connects.
			d, err := b.AllowN(t.Context(), "127.0.0.1", 1)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			rl := mustRateLimit(t, RateLimitConfig{LimitHealth: tc.limitHealth}, Policy{Budget: b})
			client, conn := serveApp(t, rl)

			// 10 s only bounds a hang on a loaded machine: the health
			// check answers (or is refused) in milliseconds.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for range 3 {
				_, err := client.EmptyCall(ctx, &testgrpc.Empty{})
				st := status.Convert(err)
				assert.Equal(t, tc.code, st.Code(), "%v", st)
				assert.Contains(t, st.Message(), tc.message)
			}
			if !tc.limitHealth {
				assert.Equal(t, connectivity.Ready, conn.GetState(), "the channel stays ready")
			}
		})
	}
}

// TestReflectionAndHealthSkipped: every server interceptor lets health
// checking and reflection through by default.
func TestReflectionAndHealthSkipped(t *testing.T) {
	for _, m := range []string{
		"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	} {
		assert.True(t, infrastructure(m), m)
	}
	for _, m := range []string{"/grpc.health.v2.Health/Check", "/grpc.testing.TestService/EmptyCall", "/grpc.health.v1.HealthX/Check"} {
		assert.False(t, infrastructure(m), m)
	}
	b := newLocal(t, limiter.Every(time.Hour, 1))
	rl := mustRateLimit(t, RateLimitConfig{}, Policy{Budget: b})
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary)))
	for range 3 {
		_, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	}
	assert.Zero(t, b.Stats().Keys, "nothing asked")
}
