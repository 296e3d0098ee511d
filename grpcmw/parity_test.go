package grpcmw_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// TestWireParityWithHTTP checks that the gRPC interceptors and the HTTP
// middleware put the same notice bytes on the wire (both encode with
// package internal/wire), so that a client library or gateway can speak
// both.
func TestWireParityWithHTTP(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, CacheTTL: -1})
	require.NoError(t, err)
	for _, r := range []invalidate.Rollout{
		{ID: "ascii", Scope: `tag:"catalog"\x`},
		{ID: "bytes\xff", Scope: "caf\xc3\xa9 \x00"},
		{ID: "all", Scope: invalidate.ScopeAll},
	} {
		r.Cohorts, r.Rate, r.Clients, r.Coverage, r.By = 10, 1000, 10, 0.1, "test"
		_, err := c.Start(ctx, r)
		require.NoError(t, err)
	}
	for range 20 { // the guarded ScopeAll rollout takes at least 10 minutes
		clk.Add(time.Minute)
		require.NoError(t, c.Advance(ctx))
	}

	inv, err := httpmw.Invalidate(c, httpmw.InvalidateConfig{})
	require.NoError(t, err)
	hsrv := httptest.NewServer(inv(http.NotFoundHandler()))
	defer hsrv.Close()
	req, err := http.NewRequest(http.MethodGet, hsrv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Herdcap-Epoch", "0")
	req.Header.Set("Herdcap-Client", "client-1")
	res, err := hsrv.Client().Do(req)
	require.NoError(t, err)
	res.Body.Close()
	httpValue := res.Header.Get("Herdcap-Invalidate")
	require.NotEmpty(t, httpValue)

	inter, err := grpcmw.Invalidate(c, grpcmw.InvalidateConfig{NotifyHealth: true})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gsrv := grpc.NewServer(grpc.ChainUnaryInterceptor(inter.Unary))
	healthpb.RegisterHealthServer(gsrv, health.NewServer())
	go func() { _ = gsrv.Serve(lis) }()
	defer gsrv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	var header metadata.MD
	_, err = healthpb.NewHealthClient(conn).Check(
		metadata.AppendToOutgoingContext(ctx, "herdcap-epoch", "0", "herdcap-client", "client-1"),
		&healthpb.HealthCheckRequest{}, grpc.Header(&header))
	require.NoError(t, err)
	assert.Equal(t, []string{httpValue}, header.Get("herdcap-invalidate"))
	assert.Equal(t, []string{res.Header.Get("Herdcap-Epoch")}, header.Get("herdcap-epoch"))
}

// guardedHealth is a health service whose answers go through an origin
// guard, as a handler's lookups in its origin would: a refusal is returned
// wrapped, as a handler would return it.
type guardedHealth struct {
	healthpb.UnimplementedHealthServer
	g *origin.Guard
}

func (h guardedHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := h.g.Do(ctx, origin.Foreground, func(context.Context) error { return nil }); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h guardedHealth) Watch(_ *healthpb.HealthCheckRequest, ss healthpb.Health_WatchServer) error {
	if err := h.g.Do(ss.Context(), origin.Foreground, func(context.Context) error { return nil }); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	return ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// newRefusingGuard returns a guard with one token, then a token every
// 1.25 s on a clock that does not move: its second call is refused, told
// 1.25 s.
func newRefusingGuard(t *testing.T) *origin.Guard {
	t.Helper()
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	b, err := limiter.NewLocal(limiter.PerSecond(0.8, 1), limiter.Config{Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	g, err := origin.New(origin.Config{Budget: b, Name: "db", MaxWait: origin.NoWait, Clock: clk})
	require.NoError(t, err)
	return g
}

// TestOriginRefusalParityWithHTTP: a handler's call refused by the origin
// guard reaches a client as the same refusal on both transports: HTTP 503
// (httpmw.WriteRefusal) with Retry-After and Herdcap-Retry-After-Ms, and
// gRPC UNAVAILABLE with RetryInfo and the pushback trailer, sent
// Trailers-Only, carrying the same exact wait. Two interceptors in a
// chain send the pushback once; a stream is answered alike.
func TestOriginRefusalParityWithHTTP(t *testing.T) {
	ctx := context.Background()
	hg := newRefusingGuard(t)
	hsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := hg.Do(r.Context(), origin.Foreground, func(context.Context) error { return nil })
		if !httpmw.WriteRefusal(w, err) {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer hsrv.Close()
	var res *http.Response
	for range 2 {
		var err error
		res, err = hsrv.Client().Get(hsrv.URL)
		require.NoError(t, err)
		res.Body.Close()
	}
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)

	big, err := limiter.NewLocal(limiter.PerSecond(1e6, 1000), limiter.Config{})
	require.NoError(t, err)
	defer big.Close()
	rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{LimitHealth: true}, grpcmw.Policy{Budget: big})
	require.NoError(t, err)
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{CacheTTL: -1})
	require.NoError(t, err)
	inv, err := grpcmw.Invalidate(c, grpcmw.InvalidateConfig{NotifyHealth: true})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gsrv := grpc.NewServer(grpc.ChainUnaryInterceptor(rl.Unary, inv.Unary), grpc.ChainStreamInterceptor(rl.Stream, inv.Stream))
	healthpb.RegisterHealthServer(gsrv, guardedHealth{g: newRefusingGuard(t)})
	go func() { _ = gsrv.Serve(lis) }()
	defer gsrv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "the guard's first token")
	var header, trailer metadata.MD
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
	assert.Equal(t, "origin busy; retry after 1.25s", st.Message(), "no internals (the origin's name) in the message")
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	assert.Equal(t, 1250*time.Millisecond, delay, "RetryInfo: the guard's wait")
	assert.Equal(t, []string{res.Header.Get("Herdcap-Retry-After-Ms")}, trailer.Get("grpc-retry-pushback-ms"),
		"the same exact wait as HTTP's, once, whatever the interceptors in the chain")
	assert.Equal(t, res.Header.Get("Retry-After"), strconv.FormatInt(int64((delay+time.Second-1)/time.Second), 10),
		"RetryInfo rounded up to whole seconds is HTTP's Retry-After")
	assert.Empty(t, header, "Trailers-Only, so that grpc-go clients honour the pushback")

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Len(t, stream.Trailer().Get("grpc-retry-pushback-ms"), 1)
}
