package grpcmw

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/retry"
)

// defaultMaxAttempts is retry.Policy's default MaxAttempts.
const defaultMaxAttempts = 4

// seen records the incoming metadata of every call or stream that reaches
// it; it sits first in the server's chain.
type seen struct {
	mu  sync.Mutex
	mds []metadata.MD
	at  []time.Time
}

func (s *seen) add(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.mds = append(s.mds, md)
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
}

func (s *seen) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		s.add(ctx)
		return h(ctx, req)
	}
}

func (s *seen) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		s.add(ss.Context())
		return h(srv, ss)
	}
}

// forClient returns the times of the attempts whose client ID is id.
func (s *seen) forClient(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for i, md := range s.mds {
		if v := md.Get(metadataClient); len(v) == 1 && v[0] == id {
			out = append(out, s.at[i])
		}
	}
	return out
}

func (s *seen) all() []metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]metadata.MD(nil), s.mds...)
}

func newClient(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	require.NoError(t, err)
	return c
}

// dialWith dials addr through hc's interceptors.
func dialWith(t testing.TB, addr string, hc *Client, opts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(hc.UnaryInterceptor()),
		grpc.WithChainStreamInterceptor(hc.StreamInterceptor())}, opts...)
	return dialHealth(t, addr, opts...)
}

func TestClientEndToEnd(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	a := newAdmission(t, limiter.Every(time.Hour, 1), admission.Config{Config: limiter.Config{Clock: clk}, TicketKeys: testTicketKeys, TicketTTL: time.Hour})
	adm := mustAdmit(t, a, admitHealth).Unary
	inv := mustInvalidate(t, c, notifyHealth).Unary
	var rec seen
	addr := startHealth(t, grpc.ChainUnaryInterceptor(rec.unary(), adm, inv))

	var got []invalidate.Notice
	hc := newClient(t, ClientConfig{ClientID: "client-7", OnInvalidate: func(n invalidate.Notice) { got = append(got, n) }})
	health := dialWith(t, addr, hc)
	req := &healthpb.HealthCheckRequest{}

	_, err := health.Check(t.Context(), req)
	require.NoError(t, err)
	tok := hc.core.Ticket()
	require.Len(t, tok, ticket.Len)

	e1 := releaseNow(t, c, clk, "r1", "tag:a")
	e2 := releaseNow(t, c, clk, "r2", "caf\xc3\xa9")
	for range 2 {
		// The caller's own metadata is kept; herdcap keys it sets are replaced.
		_, err = health.Check(withMD(t.Context(), "x-trace", "t1", metadataEpoch, "999"), req)
		require.NoError(t, err, "rejoined on the ticket: the budget is spent for an hour")
	}
	assert.Equal(t, []invalidate.Notice{{RolloutID: "r1", Scope: "tag:a", Epoch: e1}, {RolloutID: "r2", Scope: "caf\xc3\xa9", Epoch: e2}}, got)
	assert.Equal(t, e2, hc.Applied())

	mds := rec.all()
	require.Len(t, mds, 3)
	assert.Equal(t, []string{"client-7"}, mds[0].Get(metadataClient))
	assert.Equal(t, []string{"0"}, mds[0].Get(metadataEpoch))
	assert.Empty(t, mds[0].Get(metadataTicket))
	assert.Equal(t, []string{tok}, mds[1].Get(metadataTicket))
	assert.Equal(t, []string{"t1"}, mds[1].Get("x-trace"))
	assert.Equal(t, []string{fmt.Sprint(e2)}, mds[2].Get(metadataEpoch))

	hc.ResetSession()
	_, err = health.Check(t.Context(), req, grpc.WaitForReady(false))
	assert.Equal(t, codes.Unavailable, status.Code(err), "a new session now, refused until its slot in an hour")
}

// thawingClock stands still at t0 until Thaw, then runs at wall-clock speed
// from t0. A test freezes time while it sets up a decision that must not
// depend on how fast the machine is (two sessions "at once"), then lets a
// real wait play out against it.
type thawingClock struct {
	mu     sync.Mutex
	thawed time.Time // zero while frozen
}

// Now returns t0 while frozen, else t0 plus the wall time since Thaw.
func (c *thawingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.thawed.IsZero() {
		return t0
	}
	return t0.Add(time.Since(c.thawed))
}

// AfterFunc makes thawingClock a limiter.Clock; the components under test
// set no timers, and this one runs them in real time.
func (c *thawingClock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	return time.AfterFunc(d, f)
}

// thawAfter thaws clk once the interceptors it wraps (Admit's) have
// decided n calls.
type thawAfter struct {
	Interceptors
	clk *thawingClock
	n   atomic.Int32
}

// decided counts one decision, and thaws the clock at the nth.
func (a *thawAfter) decided() {
	if a.n.Add(-1) == 0 {
		a.clk.mu.Lock()
		a.clk.thawed = time.Now()
		a.clk.mu.Unlock()
	}
}

// unary and stream are the wrapped interceptors, counting decisions: a
// call is decided once the wrapped interceptor has returned (refused) or
// called the handler (admitted).
func (a *thawAfter) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		called := false
		resp, err := a.Unary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			called = true
			a.decided()
			return h(ctx, req)
		})
		if !called {
			a.decided()
		}
		return resp, err
	}
}

func (a *thawAfter) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		called := false
		err := a.Stream(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			called = true
			a.decided()
			return h(srv, ss)
		})
		if !called {
			a.decided()
		}
		return err
	}
}

// frozenForTwo returns Admit's interceptors over a gate of 5 sessions per
// second, 1 at once, whose clock stands still for its first two decisions
// and runs from then on: the first client is admitted, the second refused
// with a slot 200 ms later plus up to 200 ms of the gate's jitter however
// slow the machine (on the wall clock the bucket could refill between
// them), and the second's real wait plays out against the running clock.
// Its retry is let in when it comes at or after the slot and within the
// 10 s slot grace: only a stall of 10 s between the refusal and the retry
// could fail this.
func frozenForTwo(t *testing.T) *thawAfter {
	clk := &thawingClock{}
	g := newAdmission(t, limiter.PerSecond(5, 1), admission.Config{Config: limiter.Config{Clock: clk}})
	a := &thawAfter{Interceptors: mustAdmit(t, g, admitHealth), clk: clk}
	a.n.Store(2)
	return a
}

// TestClientWaitsForTheSlot: a refused client comes back no earlier than
// its admission slot and is let in.
func TestClientWaitsForTheSlot(t *testing.T) {
	unary := frozenForTwo(t).unary()
	var rec seen
	addr := startHealth(t, grpc.ChainUnaryInterceptor(rec.unary(), unary))

	first := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "first"}), grpc.WithDisableRetry())
	second := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "second"}), grpc.WithDisableRetry())
	_, err := first.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = second.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "let in on the retry")
	at := rec.forClient("second")
	require.Len(t, at, 2, "one refusal, one retry")
	// The slot is at least one interval after the refusal. A lower bound
	// only: load can delay the retry, never advance it.
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), 200*time.Millisecond)
}

// TestClientStreamRetriesAtOpen: a server-streaming call refused as it
// opens is opened again after the pushback, and its request sent again.
func TestClientStreamRetriesAtOpen(t *testing.T) {
	adm := frozenForTwo(t).stream()
	var rec seen
	addr := startHealth(t, grpc.ChainStreamInterceptor(rec.stream(), adm))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "first"}), grpc.WithDisableRetry())
	s1, err := first.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = s1.Recv()
	require.NoError(t, err)

	second := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "second"}), grpc.WithDisableRetry())
	s2, err := second.Watch(ctx, &healthpb.HealthCheckRequest{Service: ""})
	require.NoError(t, err)
	resp, err := s2.Recv()
	require.NoError(t, err, "the stream was opened again at its slot")
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "the replayed request was answered")
	at := rec.forClient("second")
	require.Len(t, at, 2, "one refusal, one retry")
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), 200*time.Millisecond)
}

// TestClientBidiNotRetried: a refused client-streaming or bidirectional
// stream is not opened again.
func TestClientBidiNotRetried(t *testing.T) {
	a := newAdmission(t, limiter.Every(time.Hour, 1), admission.Config{})
	adm := mustAdmit(t, a, admitHealth).Stream
	var rec seen
	addr := startHealth(t, grpc.ChainStreamInterceptor(rec.stream(), adm))
	hc := newClient(t, ClientConfig{ClientID: "c"})
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithChainStreamInterceptor(hc.StreamInterceptor()), grpc.WithDisableRetry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	d, err := a.Admit(t.Context(), "someone", "") // spend the hour's one session
	require.NoError(t, err)
	require.True(t, d.Admitted)
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(t.Context(), desc, watchMethod)
	require.NoError(t, err)
	// The server refuses the stream Trailers-Only, possibly before the
	// client sends: grpc-go then reports io.EOF from SendMsg and keeps the
	// status for RecvMsg (see grpc.ClientStream.SendMsg), so io.EOF is one
	// of the two outcomes here, not a failure.
	if err := s.SendMsg(&healthpb.HealthCheckRequest{}); err != nil {
		require.ErrorIs(t, err, io.EOF)
	}
	require.NoError(t, s.CloseSend())
	err = s.RecvMsg(&healthpb.HealthCheckResponse{})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Len(t, rec.forClient("c"), 1, "refused once, not retried")
}

// refusing returns a unary interceptor that fails every call with code,
// setting the given pushback trailer (if any) and details.
func refusing(code codes.Code, pushbackValue string, details ...*errdetails.RetryInfo) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
		if pushbackValue != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(pushbackTrailer, pushbackValue))
		}
		st := status.New(code, "no")
		for _, d := range details {
			st, _ = st.WithDetails(d)
		}
		return nil, st.Err()
	}
}

func TestClientRetryDecisions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   grpc.UnaryServerInterceptor
		cfg      ClientConfig
		attempts int
		minGap   time.Duration
	}{
		{"pushback", refusing(codes.Unavailable, "30"), ClientConfig{}, 4, 30 * time.Millisecond},
		{"RetryInfo without pushback", refusing(codes.ResourceExhausted, "", &errdetails.RetryInfo{RetryDelay: durationpb.New(40 * time.Millisecond)}), ClientConfig{}, 4, 40 * time.Millisecond},
		{"negative pushback forbids retries", refusing(codes.Unavailable, "-1"), ClientConfig{}, 1, 0},
		{"unparseable pushback forbids retries", refusing(codes.Unavailable, "soon"), ClientConfig{}, 1, 0},
		{"code not retried", refusing(codes.PermissionDenied, "1"), ClientConfig{}, 1, 0},
		{"codes chosen", refusing(codes.Aborted, "1"), ClientConfig{RetryCodes: []codes.Code{codes.Aborted}}, 4, 0},
		{"no codes", refusing(codes.Unavailable, "1"), ClientConfig{RetryCodes: []codes.Code{}}, 1, 0},
		{"max attempts", refusing(codes.Unavailable, "1"), ClientConfig{Retry: retry.Policy{MaxAttempts: 2}}, 2, 0},
		{"max wait", refusing(codes.Unavailable, "400"), ClientConfig{Retry: retry.Policy{MaxWait: time.Second}}, 3, 0},
		{"pushback beyond max wait", refusing(codes.Unavailable, "60000"), ClientConfig{}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec seen
			addr := startHealth(t, grpc.ChainUnaryInterceptor(rec.unary(), tc.server))
			cfg := tc.cfg
			cfg.ClientID = "c"
			health := dialWith(t, addr, newClient(t, cfg), grpc.WithDisableRetry())
			start := time.Now()
			_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.Error(t, err)
			at := rec.forClient("c")
			assert.Len(t, at, tc.attempts)
			for i := 1; i < len(at); i++ {
				assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), tc.minGap, "retried before the hint")
			}
			// Nothing here waits a second in all; 20 s is for a loaded machine.
			assert.Less(t, time.Since(start), 20*time.Second)
		})
	}
}

func TestClientRetryBudget(t *testing.T) {
	var rec seen
	addr := startHealth(t, grpc.ChainUnaryInterceptor(rec.unary(), refusing(codes.Unavailable, "1")))
	// 4 tokens: an outage allows exactly one retry (4 → 3 → retry → 2 → stop).
	rb, err := retry.NewBudget(4, 0.5)
	require.NoError(t, err)
	health := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "c", Retry: retry.Policy{Budget: rb, MaxAttempts: 100}}), grpc.WithDisableRetry())
	for range 5 {
		_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.Equal(t, codes.Unavailable, status.Code(err))
	}
	assert.Len(t, rec.forClient("c"), 6, "five first tries and the one retry the budget allows")
}

// TestClientWithGRPCRetryPolicy shows the two ways to combine the Client
// with grpc-go's retry policy, and what happens when both retry. The
// server refuses every call with a short pushback: an admission on a clock
// that stands still keeps the client's slot ahead of it.
func TestClientWithGRPCRetryPolicy(t *testing.T) {
	const policy = `{"methodConfig": [{
		"name": [{"service": "grpc.health.v1.Health"}],
		"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
			"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}
	}]}`
	for _, tc := range []struct {
		name     string
		retry    retry.Policy
		dial     grpc.DialOption
		attempts int
	}{
		{"grpc-go retries, Client only carries metadata", retry.Policy{MaxAttempts: 1}, grpc.WithDefaultServiceConfig(policy), 3},
		{"Client retries, no retry policy", retry.Policy{}, grpc.WithDisableRetry(), defaultMaxAttempts},
		{"both retry: attempts multiply", retry.Policy{MaxAttempts: 2}, grpc.WithDefaultServiceConfig(policy), 3 * 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeclock.New(t0)
			// 10 per second, 1 at once: the refused client's slot is
			// 100 ms ahead plus jitter, and stays so.
			a := newAdmission(t, limiter.PerSecond(10, 1), admission.Config{Config: limiter.Config{Clock: clk}})
			_, err := a.Admit(t.Context(), "someone", "")
			require.NoError(t, err)
			adm := mustAdmit(t, a, admitHealth).Unary
			var rec seen
			addr := startHealth(t, grpc.ChainUnaryInterceptor(rec.unary(), adm))
			health := dialWith(t, addr, newClient(t, ClientConfig{ClientID: "c", Retry: tc.retry}), tc.dial)
			_, err = health.Check(t.Context(), &healthpb.HealthCheckRequest{})
			require.Equal(t, codes.Unavailable, status.Code(err))
			at := rec.forClient("c")
			assert.Len(t, at, tc.attempts)
			for i := 1; i < len(at); i++ {
				assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), 100*time.Millisecond, "every attempt honours the pushback")
			}
		})
	}
}

func TestClientHonoursCancellation(t *testing.T) {
	addr := startHealth(t, grpc.ChainUnaryInterceptor(refusing(codes.Unavailable, "5000")))
	health := dialWith(t, addr, newClient(t, ClientConfig{}), grpc.WithDisableRetry())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	// The pushback was 5 s; 4 s of slack for a loaded machine still
	// proves the wait ended with the context.
	assert.Less(t, time.Since(start), 4*time.Second)
}

func TestClientMalformedNotices(t *testing.T) {
	sendBad := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(metadataInvalidate, `"a";epoch=5;id="r5", "b";epoch=x;id="r6"`))
		return h(ctx, req)
	}
	addr := startHealth(t, grpc.ChainUnaryInterceptor(sendBad))
	var logs syncBuffer
	var got []string
	hc := newClient(t, ClientConfig{OnInvalidate: func(n invalidate.Notice) { got = append(got, n.Scope) }, Logger: newDebugLogger(&logs)})
	_, err := dialWith(t, addr, hc).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, got)
	assert.EqualValues(t, 5, hc.Applied())
	assert.Contains(t, logs.String(), "malformed herdcap-invalidate")
}

func TestClientConcurrentNoticesAppliedOnce(t *testing.T) {
	clk := fakeclock.New(t0)
	c := newCoordinator(t, clk)
	const rollouts = 12
	for i := range rollouts {
		_, err := c.Start(t.Context(), invalidate.Rollout{ID: fmt.Sprint("r", i), Scope: fmt.Sprint("s", i), Cohorts: 1,
			Rate: 1000, Clients: 1, Coverage: 0.1, By: "test"})
		require.NoError(t, err)
	}
	clk.Add(time.Second)
	require.NoError(t, c.Advance(t.Context()))
	inv := mustInvalidate(t, c, InvalidateConfig{MaxNotices: 2, NotifyHealth: true}).Unary
	addr := startHealth(t, grpc.ChainUnaryInterceptor(inv))
	var (
		mu       sync.Mutex
		got      []string
		inFlight atomic.Int32
		overlap  atomic.Bool
	)
	hc := newClient(t, ClientConfig{ClientID: "c", OnInvalidate: func(n invalidate.Notice) {
		if inFlight.Add(1) > 1 {
			overlap.Store(true)
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		got = append(got, n.Scope)
		mu.Unlock()
		inFlight.Add(-1)
	}})
	health := dialWith(t, addr, hc)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 8 {
				_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	// Concurrent calls may carry an epoch the applier has not reached
	// yet and be told the same notices again (which the Client skips);
	// calls one at a time collect the rest.
	for range rollouts {
		_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	}
	want := make([]string, rollouts)
	for i := range want {
		want[i] = fmt.Sprint("s", i)
	}
	assert.Equal(t, want, got)
	assert.False(t, overlap.Load(), "the callback never runs twice at once")
}

func TestClientConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   ClientConfig
		want  string
		retry bool // a Retry field: retry.ErrInvalidConfig is wrapped too
	}{
		{ClientConfig{ClientID: " "}, "ClientConfig.ClientID must be 1 to 256 bytes of visible ASCII", false},
		{ClientConfig{ClientID: "a b"}, `ClientConfig.ClientID must be 1 to 256 bytes of visible ASCII other than the comma, got "a b"`, false},
		{ClientConfig{ClientID: strings.Repeat("x", maxClientIDLen+1)}, "ClientConfig.ClientID must be 1 to 256 bytes", false},
		{ClientConfig{Applied: invalidate.MaxEpoch + 1}, "ClientConfig.Applied must be at most invalidate.MaxEpoch", false},
		{ClientConfig{Retry: retry.Policy{Backoff: retry.Backoff{Base: -time.Second}}}, "ClientConfig.Retry.Backoff.Base must be >= 0, got -1s", true},
		{ClientConfig{Retry: retry.Policy{MaxAttempts: -1}}, "ClientConfig.Retry.MaxAttempts must be >= 0, got -1", true},
		{ClientConfig{Retry: retry.Policy{MaxWait: -time.Second}}, "ClientConfig.Retry.MaxWait", true},
		{ClientConfig{RetryCodes: []codes.Code{codes.OK}}, "ClientConfig.RetryCodes[0]: code OK cannot be retried", false},
		{ClientConfig{RetryCodes: []codes.Code{codes.Aborted, codes.Code(99)}}, "ClientConfig.RetryCodes[1]", false},
	} {
		_, err := NewClient(tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, "grpcmw: invalid config: "+tc.want)
		if tc.retry {
			assert.ErrorIs(t, err, retry.ErrInvalidConfig)
		}
	}
	hc, err := NewClient(ClientConfig{Applied: 42})
	require.NoError(t, err)
	assert.EqualValues(t, 42, hc.Applied())
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
