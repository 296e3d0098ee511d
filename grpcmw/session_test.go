package grpcmw

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// newCoordinator returns a real coordinator on a fresh memory store, driven
// by clk, reading the store on every Due.
func newCoordinator(t testing.TB, clk *fakeclock.Clock) *invalidate.Coordinator {
	t.Helper()
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(),
		invalidate.Config{Clock: clk, CacheTTL: -1, PopulationWindow: -1})
	require.NoError(t, err)
	return c
}

// releaseNow starts an unguarded one-cohort rollout of scope on c,
// releases it, and returns its epoch.
func releaseNow(t testing.TB, c *invalidate.Coordinator, clk *fakeclock.Clock, id, scope string) uint64 {
	t.Helper()
	st, err := c.Start(context.Background(), invalidate.Rollout{ID: id, Scope: scope, Cohorts: 1, Rate: 1000,
		Clients: 1, Coverage: 0.1, By: "test"})
	require.NoError(t, err)
	clk.Add(time.Second)
	require.NoError(t, c.Advance(context.Background()))
	return st.Rollout.Epoch
}

// withMD returns ctx carrying outgoing metadata of key-value pairs.
func withMD(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func newAdmission(t testing.TB, l limiter.Limit, cfg admission.Config) *admission.Gate {
	t.Helper()
	a, err := admission.New(l, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// testTicketKeys are the ticket keys of the gates under test.
var testTicketKeys = [][]byte{[]byte("a 32-byte key for herdcap tests!")}

func TestUnaryInvalidate(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	epoch := releaseNow(t, c, clk, "catalog-v2", "tag:catalog")
	inv := mustInvalidate(t, c, notifyHealth).Unary
	var reached atomic.Int32
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(inv, countUnary(&reached))))
	req := &healthpb.HealthCheckRequest{}

	var header metadata.MD
	_, err := hc.Check(withMD(t.Context(), metadataClient, "c1", metadataEpoch, "0"), req, grpc.Header(&header))
	require.NoError(t, err)
	// The same bytes as httpmw's Herdcap-Invalidate.
	assert.Equal(t, []string{fmt.Sprintf(`"tag:catalog";epoch=%d;id="catalog-v2"`, epoch)}, header.Get(metadataInvalidate))
	assert.Equal(t, []string{strconv.FormatUint(epoch, 10)}, header.Get(metadataEpoch))

	for _, ctx := range []context.Context{
		withMD(t.Context(), metadataClient, "c1", metadataEpoch, strconv.FormatUint(epoch, 10)), // applied
		withMD(t.Context(), metadataClient, "c1"),                                               // takes no part
		t.Context(),
	} {
		header = nil
		_, err = hc.Check(ctx, req, grpc.Header(&header))
		require.NoError(t, err)
		assert.Empty(t, header.Get(metadataInvalidate))
	}
	assert.EqualValues(t, 4, reached.Load())
}

func TestStreamInvalidate(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	epoch := releaseNow(t, c, clk, "r", "scope with spaces")
	inv := mustInvalidate(t, c, notifyHealth).Stream
	hc := dialHealth(t, startHealth(t, grpc.ChainStreamInterceptor(inv)))

	ctx, cancel := context.WithCancel(withMD(t.Context(), metadataEpoch, "0"))
	defer cancel()
	s, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	resp, err := s.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	header, err := s.Header()
	require.NoError(t, err)
	assert.Equal(t, []string{fmt.Sprintf(`"scope with spaces";epoch=%d;id="r"`, epoch)}, header.Get(metadataInvalidate),
		"sent in the header with the first message")
}

func TestInvalidateBadMetadata(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	releaseNow(t, c, clk, "r", "s")
	var logs syncBuffer
	logger := newDebugLogger(&logs)
	inv := mustInvalidate(t, c, InvalidateConfig{NotifyHealth: true, Logger: logger})
	var reached atomic.Int32
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(inv.Unary, countUnary(&reached)),
		grpc.ChainStreamInterceptor(inv.Stream, countStream(&reached))))
	for _, tc := range []struct {
		name string
		kv   []string
	}{
		{"empty epoch", []string{metadataEpoch, ""}},
		{"negative epoch", []string{metadataEpoch, "-1"}},
		{"hex epoch", []string{metadataEpoch, "0x2a"}},
		{"epoch above MaxEpoch", []string{metadataEpoch, "9007199254740992"}},
		{"epoch overflowing uint64", []string{metadataEpoch, "18446744073709551616"}},
		{"oversized epoch", []string{metadataEpoch, strings.Repeat("9", 8<<10)}},
		{"repeated epoch", []string{metadataEpoch, "1", metadataEpoch, "2"}},
		{"client ID with a space", []string{metadataEpoch, "0", metadataClient, "a b"}},
		{"oversized client ID", []string{metadataEpoch, "0", metadataClient, strings.Repeat("c", maxClientIDLen+1)}},
		{"repeated client ID", []string{metadataEpoch, "0", metadataClient, "a", metadataClient, "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hc.Check(withMD(t.Context(), tc.kv...), &healthpb.HealthCheckRequest{})
			st := status.Convert(err)
			assert.Equal(t, codes.InvalidArgument, st.Code(), "%v", st)
			assert.Contains(t, st.Message(), "malformed herdcap-")
			s, err := hc.Watch(withMD(t.Context(), tc.kv...), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			_, err = s.Recv()
			assert.Equal(t, codes.InvalidArgument, status.Code(err))
		})
	}
	assert.Zero(t, reached.Load(), "a bad call never reaches the handler")
	assert.Contains(t, logs.String(), "malformed herdcap-epoch metadata")
}

// TestInvalidateKeepsRefusalsTrailersOnly puts a rate limit inside the
// invalidation interceptor: its refusal must still go out Trailers-Only,
// with the notices in the trailer beside the pushback.
func TestInvalidateKeepsRefusalsTrailersOnly(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	releaseNow(t, c, clk, "r", "s")
	inv := mustInvalidate(t, c, notifyHealth).Unary
	rl := mustRateLimit(t, limitHealth, Policy{Budget: newLocal(t, limiter.Every(time.Hour, 1))}).Unary
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(inv, rl)))
	ctx := withMD(t.Context(), metadataEpoch, "0")

	var header, trailer metadata.MD
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	require.NoError(t, err)
	assert.NotEmpty(t, header.Get(metadataInvalidate))

	header, trailer = nil, nil
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	assert.Empty(t, header, "Trailers-Only")
	assert.Greater(t, pushback(t, trailer), int64(0))
	assert.NotEmpty(t, trailer.Get(metadataInvalidate), "the notices ride in the trailer")
}

// deadRedis returns a client for a loopback port nothing listens on.
func deadRedis(t testing.TB) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestInvalidateCoordinatorErrorServesWithoutNotices(t *testing.T) {
	store, err := invalidate.NewRedisStore(fleet.Redis{Client: deadRedis(t), Timeout: time.Second})
	require.NoError(t, err)
	c, err := invalidate.NewCoordinator(store, invalidate.Config{})
	require.NoError(t, err)
	var logs syncBuffer
	inv := mustInvalidate(t, c, InvalidateConfig{NotifyHealth: true, Logger: newDebugLogger(&logs)}).Unary
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(inv)))
	var header metadata.MD
	resp, err := hc.Check(withMD(t.Context(), metadataEpoch, "0"), &healthpb.HealthCheckRequest{}, grpc.Header(&header))
	require.NoError(t, err, "a coordinator failure must not fail the call")
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	assert.Empty(t, header.Get(metadataInvalidate))
	assert.Contains(t, logs.String(), "coordinator failed; serving without notices")
}

func TestUnaryAdmission(t *testing.T) {
	clk := fakeclock.New(t0)
	// admission.ExampleNew's gate: bob's slot is 864 ms away.
	a := newAdmission(t, limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}, TicketKeys: testTicketKeys, TicketTTL: time.Hour})
	adm := mustAdmit(t, a, admitHealth).Unary
	var reached atomic.Int32
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(adm, countUnary(&reached))))
	req := &healthpb.HealthCheckRequest{}

	var header metadata.MD
	_, err := hc.Check(withMD(t.Context(), metadataClient, "alice"), req, grpc.Header(&header))
	require.NoError(t, err)
	tok := header.Get(metadataTicket)
	require.Len(t, tok, 1)
	require.Len(t, tok[0], ticket.Len)

	var trailer metadata.MD
	header = nil
	_, err = hc.Check(withMD(t.Context(), metadataClient, "bob"), req, grpc.Header(&header), grpc.Trailer(&trailer))
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", st)
	assert.Equal(t, "new session refused; retry after 864ms", st.Message())
	assert.Equal(t, 864*time.Millisecond, retryInfo(t, err))
	assert.EqualValues(t, 864, pushback(t, trailer))
	assert.Empty(t, header, "Trailers-Only")

	// Alice rejoins on her ticket although the budget is spent; a
	// tampered token is a new session.
	header = nil
	_, err = hc.Check(withMD(t.Context(), metadataClient, "alice", metadataTicket, tok[0]), req, grpc.Header(&header))
	require.NoError(t, err)
	assert.Len(t, header.Get(metadataTicket), 1, "a fresh token")
	bad := []byte(tok[0])
	bad[5] = map[bool]byte{true: 'A', false: 'B'}[bad[5] != 'A']
	for _, v := range [][]string{{string(bad)}, {tok[0][:20]}, {tok[0], tok[0]}} {
		kv := []string{metadataClient, "alice"}
		for _, x := range v {
			kv = append(kv, metadataTicket, x)
		}
		_, err = hc.Check(withMD(t.Context(), kv...), req)
		assert.Equal(t, codes.Unavailable, status.Code(err), "%.10q", v)
	}
	assert.EqualValues(t, 2, reached.Load())

	clk.Add(864 * time.Millisecond)
	_, err = hc.Check(withMD(t.Context(), metadataClient, "bob"), req)
	assert.NoError(t, err, "bob is let in at his slot")
}

func TestStreamAdmission(t *testing.T) {
	clk := fakeclock.New(t0)
	a := newAdmission(t, limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}, TicketKeys: testTicketKeys, TicketTTL: time.Hour})
	adm := mustAdmit(t, a, admitHealth).Stream
	var reached atomic.Int32
	hc := dialHealth(t, startHealth(t, grpc.ChainStreamInterceptor(adm, countStream(&reached))))

	ctx, cancel := context.WithCancel(withMD(t.Context(), metadataClient, "alice"))
	s, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = s.Recv()
	require.NoError(t, err)
	header, err := s.Header()
	require.NoError(t, err)
	assert.Len(t, header.Get(metadataTicket), 1, "the token comes with the first message")
	cancel()

	s, err = hc.Watch(withMD(t.Context(), metadataClient, "bob"), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = s.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, 864*time.Millisecond, retryInfo(t, err))
	assert.EqualValues(t, 864, pushback(t, s.Trailer()))
	header, _ = s.Header()
	assert.Empty(t, header, "Trailers-Only")
	assert.EqualValues(t, 1, reached.Load())
}

func TestAdmissionBadInput(t *testing.T) {
	a := newAdmission(t, limiter.PerSecond(100, 100), admission.Config{})
	var logs syncBuffer
	adm := mustAdmit(t, a, AdmitConfig{LimitHealth: true, Logger: newDebugLogger(&logs)}).Unary
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(adm)))
	for _, kv := range [][]string{
		{metadataClient, ""},
		{metadataClient, "a,b"},
		{metadataClient, "a", metadataClient, "b"},
		{metadataClient, strings.Repeat("x", maxClientIDLen+1)},
	} {
		_, err := hc.Check(withMD(t.Context(), kv...), &healthpb.HealthCheckRequest{})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%.20q", kv)
	}

	long := func(context.Context, string) (string, error) {
		return strings.Repeat("k", admission.MaxClientIDLen+1), nil
	}
	adm = mustAdmit(t, a, AdmitConfig{LimitHealth: true, Key: long, Logger: newDebugLogger(&logs)}).Unary
	hc = dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(adm)))
	var trailer metadata.MD
	_, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	assert.Equal(t, codes.Internal, status.Code(err))
	assert.Empty(t, trailer.Get(pushbackTrailer), "no retry can help")
	assert.Contains(t, logs.String(), "rejected the client ID")
}

// TestAdmissionRedisFailClosed runs the real fail-closed path: a Redis
// admission whose server is killed answers Unavailable with a pushback of
// one to two breaker periods, and no internals.
func TestAdmissionRedisFailClosed(t *testing.T) {
	s := redistest.Start(t)
	const breakerOpen = 2 * time.Second
	a, err := admission.NewShared(fleet.Redis{Client: s.Client(t), BreakerFailures: 1, BreakerOpen: breakerOpen, Timeout: time.Second}, limiter.PerSecond(100, 100),
		admission.SharedConfig{Failure: fleet.FailClosed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	var logs syncBuffer
	adm := mustAdmit(t, a, AdmitConfig{LimitHealth: true, Logger: newDebugLogger(&logs)}).Unary
	hc := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(adm)))
	_, err = hc.Check(withMD(t.Context(), metadataClient, "c0"), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	s.Kill(t)
	var trailer metadata.MD
	_, err = hc.Check(withMD(t.Context(), metadataClient, "c1"), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code())
	assert.True(t, strings.HasPrefix(st.Message(), "admission unavailable; retry after "), st.Message())
	assert.NotContains(t, st.Message(), s.Addr())
	ms := pushback(t, trailer)
	assert.GreaterOrEqual(t, time.Duration(ms)*time.Millisecond, breakerOpen)
	assert.LessOrEqual(t, time.Duration(ms)*time.Millisecond, 2*breakerOpen)
	assert.Contains(t, logs.String(), "admission failed; answering Unavailable")
}

func TestSessionConfig(t *testing.T) {
	c := newCoordinator(t, fakeclock.New(t0))
	a := newAdmission(t, limiter.PerSecond(1, 1), admission.Config{})
	_, err := Invalidate(nil, InvalidateConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.EqualError(t, err, "grpcmw: invalid config: Invalidate's coordinator is nil")
	_, err = Admit(nil, AdmitConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.EqualError(t, err, "grpcmw: invalid config: Admit's gate is nil")
	key := func(context.Context, string) (string, error) { return "k", nil }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{second(Invalidate(c, InvalidateConfig{MaxNotices: -1})), "grpcmw: invalid config: InvalidateConfig.MaxNotices must be >= 0, got -1"},
		{second(Admit(a, AdmitConfig{UnavailableRetryAfter: -1})), "grpcmw: invalid config: AdmitConfig.UnavailableRetryAfter must be >= 0 (0 means 1s), got -1ns"},
		{second(Admit(a, AdmitConfig{IPv4Prefix: 33})), "grpcmw: invalid config: AdmitConfig.IPv4Prefix must be 0 (32) or 1 to 32, got 33"},
		{second(Admit(a, AdmitConfig{IPv6Prefix: 48, Key: key})), "grpcmw: invalid config: AdmitConfig.IPv4Prefix and IPv6Prefix configure the default key, which AdmitConfig.Key replaces"},
		{second(Invalidate(c, InvalidateConfig{IPv6Prefix: -1})), "grpcmw: invalid config: InvalidateConfig.IPv6Prefix must be 0 (64) or 1 to 128, got -1"},
		{second(Invalidate(c, InvalidateConfig{IPv4Prefix: 24, Key: key})), "grpcmw: invalid config: InvalidateConfig.IPv4Prefix and IPv6Prefix configure the default key, which InvalidateConfig.Key replaces"},
	} {
		assert.ErrorIs(t, tc.err, ErrInvalidConfig)
		assert.ErrorContains(t, tc.err, tc.want)
	}
}

func second[T any](_ T, err error) error { return err }

var newDebugLogger = logtest.NewLogger
