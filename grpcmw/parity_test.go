package grpcmw_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/invalidate"
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
