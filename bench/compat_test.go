package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/limiter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// grpcmw.Limiter must satisfy the real go-grpc-middleware v2 interface.
var _ ratelimit.Limiter = (*grpcmw.Limiter)(nil)

// pushbackTrailer is gRPC's retry pushback trailer (gRPC A6).
const pushbackTrailer = "grpc-retry-pushback-ms"

// serveHealth serves the standard health service (everything SERVING) with
// opts on a loopback listener, and returns a grpc-go client for it. Both are
// shut down when the test ends.
func serveHealth(t *testing.T, dial []grpc.DialOption, opts ...grpc.ServerOption) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	dial = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-served
	})
	return healthpb.NewHealthClient(conn)
}

// limitHealth makes the Limiter limit the health service, the one these
// tests serve, which it skips by default.
var limitHealth = grpcmw.RateLimitConfig{LimitHealth: true}

// hourLimiter returns a grpcmw.Limiter over a bucket of one token that
// refills once an hour, keyed by the client's IP (the default).
func hourLimiter(t *testing.T) *grpcmw.Limiter {
	t.Helper()
	b, err := limiter.NewLocal(limiter.Every(time.Hour, 1), limiter.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := grpcmw.NewLimiter(limitHealth, grpcmw.Policy{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkDenied checks a refusal by go-grpc-middleware's interceptor around a
// grpcmw.Limiter over hourLimiter's bucket: ResourceExhausted, grpcmw's text
// inside the middleware's message, and the pushback trailer grpcmw sets
// itself, of nearly an hour.
func checkDenied(t *testing.T, err error, trailer metadata.MD) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("status %v, want ResourceExhausted", st)
	}
	for _, want := range []string{"grpc_ratelimit", "rate limit exceeded"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("message %q lacks %q", st.Message(), want)
		}
	}
	got := trailer.Get(pushbackTrailer)
	if len(got) != 1 {
		t.Fatalf("trailer %s = %q, want one value (trailer %v)", pushbackTrailer, got, trailer)
	}
	ms, err := strconv.ParseInt(got[0], 10, 64)
	if err != nil {
		t.Fatalf("trailer %s = %q: %v", pushbackTrailer, got[0], err)
	}
	// An hour less the time since the token was taken, rounded up to the
	// millisecond; a minute of slack covers any loaded machine.
	if hour := time.Hour.Milliseconds(); ms > hour || ms < hour-time.Minute.Milliseconds() {
		t.Errorf("pushback %d ms, want within a minute below %d ms", ms, hour)
	}
}

func TestGoGRPCMiddlewareUnary(t *testing.T) {
	c := serveHealth(t, nil, grpc.ChainUnaryInterceptor(ratelimit.UnaryServerInterceptor(hourLimiter(t))))
	req := &healthpb.HealthCheckRequest{}

	resp, err := c.Check(t.Context(), req)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first call: status %v", resp.GetStatus())
	}

	var header, trailer metadata.MD
	_, err = c.Check(t.Context(), req, grpc.Header(&header), grpc.Trailer(&trailer))
	checkDenied(t, err, trailer)
	// Trailers-Only, as grpcmw's doc promises for the middleware too: the
	// refusal sent no response header, so retry policies can act on it.
	if len(header) != 0 {
		t.Errorf("response header %v on a refusal, want none (Trailers-Only)", header)
	}
}

func TestGoGRPCMiddlewareStream(t *testing.T) {
	c := serveHealth(t, nil, grpc.ChainStreamInterceptor(ratelimit.StreamServerInterceptor(hourLimiter(t))))
	req := &healthpb.HealthCheckRequest{}

	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Watch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatalf("first stream: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first stream: status %v", resp.GetStatus())
	}
	cancel()

	s, err = c.Watch(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	checkDenied(t, err, s.Trailer())
	if header, _ := s.Header(); len(header) != 0 {
		t.Errorf("response header %v on a refusal, want none (Trailers-Only)", header)
	}
}

// TestGoGRPCMiddlewarePushbackRetry shows the pushback working end to end
// through the real middleware: a client whose retry policy backs off only
// 1 ms waits for the server's pushback instead, and its retry succeeds.
func TestGoGRPCMiddlewarePushbackRetry(t *testing.T) {
	const interval = 300 * time.Millisecond // one token per interval, burst 1
	b, err := limiter.NewLocal(limiter.Every(interval, 1), limiter.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := grpcmw.NewLimiter(limitHealth, grpcmw.Policy{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		arrivals  []time.Time
		codesSeen []codes.Code
	)
	// arrive sits before the rate limit and records every attempt.
	arrive := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		at := time.Now()
		resp, err := h(ctx, req)
		mu.Lock()
		arrivals = append(arrivals, at)
		codesSeen = append(codesSeen, status.Code(err))
		mu.Unlock()
		return resp, err
	}
	// Had the client ignored the pushback, its second attempt would come
	// 1 ms after the first, be refused too, and the call would fail.
	const serviceConfig = `{"methodConfig": [{
		"name": [{"service": "grpc.health.v1.Health"}],
		"retryPolicy": {
			"maxAttempts": 2,
			"initialBackoff": "0.001s",
			"maxBackoff": "0.001s",
			"backoffMultiplier": 1,
			"retryableStatusCodes": ["RESOURCE_EXHAUSTED"]
		}
	}]}`
	c := serveHealth(t, []grpc.DialOption{grpc.WithDefaultServiceConfig(serviceConfig)},
		grpc.ChainUnaryInterceptor(arrive, ratelimit.UnaryServerInterceptor(l)))

	// Spend the token under the client's key (its IP, the default key).
	if d, err := b.AllowN(t.Context(), "127.0.0.1", 1); err != nil || !d.Allowed {
		t.Fatalf("spending the token: %+v, %v", d, err)
	}
	if _, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("the retry after the pushback should succeed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 2 || codesSeen[0] != codes.ResourceExhausted || codesSeen[1] != codes.OK {
		t.Fatalf("attempts answered %v, want one refusal then one success", codesSeen)
	}
	// A lower bound only (load delays a retry, never advances it), with
	// 50 ms taken off for the time between spending the token and the
	// first attempt.
	if gap := arrivals[1].Sub(arrivals[0]); gap < interval-50*time.Millisecond {
		t.Errorf("retry came %v after the refusal: the %v pushback was not honoured", gap, interval)
	}
}
