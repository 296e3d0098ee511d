package grpcmw_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
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
	"github.com/herdcap/herdcap/internal/slowstarttest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/retry"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

var ssT0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// ssOutcome is what a client saw of one call, transport-neutral.
type ssOutcome struct {
	Kind   string // ok, unavailable, internal
	WaitMs int64  // the exact wait (Herdcap-Retry-After-Ms; the pushback), or a coarse one in whole seconds
	Exact  bool
}

// ssStep is one call of the parity run: the clock moves by advance, then
// the call is made with client as its client field ("" none).
type ssStep struct {
	advance time.Duration
	client  string
}

// ssWorld builds a case's gate, afresh for each transport.
type ssWorld func(clk *fakeclock.Clock) (*slowstart.Gate, error)

type ssBroken struct{}

func (ssBroken) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, limiter.ErrUnavailable
}

func ssRunHTTP(t *testing.T, w ssWorld, steps []ssStep) []ssOutcome {
	t.Helper()
	clk := fakeclock.New(ssT0)
	g, err := w(clk)
	require.NoError(t, err)
	mw, err := httpmw.SlowStart(g, httpmw.SlowStartConfig{})
	require.NoError(t, err)
	srv := httptest.NewServer(mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv.Close()
	var outs []ssOutcome
	for _, s := range steps {
		clk.Add(s.advance)
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		if s.client != "" {
			req.Header.Set("Herdcap-Client", s.client)
		}
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		o := ssOutcome{Kind: map[int]string{200: "ok", 503: "unavailable", 500: "internal"}[res.StatusCode]}
		if v := res.Header.Get("Herdcap-Retry-After-Ms"); v != "" {
			o.Exact = true
			o.WaitMs, err = strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
		} else if v := res.Header.Get("Retry-After"); v != "" {
			secs, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			o.WaitMs = secs * 1000
		}
		outs = append(outs, o)
	}
	return outs
}

// ssServe starts a real grpc-go server on loopback with the interceptors
// of SlowStart on g, then next, and returns a connection to it.
func ssServe(t *testing.T, g *slowstart.Gate, next grpc.UnaryServerInterceptor, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	in, err := grpcmw.SlowStart(g, grpcmw.SlowStartConfig{LimitHealth: true})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	chain := []grpc.UnaryServerInterceptor{in.Unary}
	if next != nil {
		chain = append([]grpc.UnaryServerInterceptor{next}, chain...)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(chain...))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func ssRunGRPC(t *testing.T, w ssWorld, steps []ssStep) []ssOutcome {
	t.Helper()
	clk := fakeclock.New(ssT0)
	g, err := w(clk)
	require.NoError(t, err)
	conn := ssServe(t, g, nil)
	var outs []ssOutcome
	for _, s := range steps {
		clk.Add(s.advance)
		ctx := context.Background()
		if s.client != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "herdcap-client", s.client)
		}
		var trailer metadata.MD
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		o := ssOutcome{Kind: map[codes.Code]string{codes.OK: "ok", codes.Unavailable: "unavailable", codes.Internal: "internal"}[status.Code(err)]}
		if v := trailer.Get("grpc-retry-pushback-ms"); len(v) == 1 {
			o.Exact = true
			o.WaitMs, err = strconv.ParseInt(v[0], 10, 64)
			require.NoError(t, err)
		} else if err != nil {
			for _, d := range status.Convert(err).Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok { // coarse: whole seconds, as Retry-After
					o.WaitMs = (ri.GetRetryDelay().AsDuration() + time.Second - 1).Milliseconds() / 1000 * 1000
				}
			}
		}
		outs = append(outs, o)
	}
	return outs
}

// TestSlowStartParity runs the same calls through real net/http and
// grpc-go servers on loopback, each in front of its own Gate on its own
// clock driven alike, and checks that both transports answer every call
// the same way: admitted or shed, the wait, exact or coarse.
func TestSlowStartParity(t *testing.T) {
	in, mid, out := slowstarttest.ClientAt(t, 0, 0.2), slowstarttest.ClientAt(t, 0.5, 0.6), slowstarttest.ClientAt(t, 0.9, 1)
	var steps []ssStep
	for _, adv := range []time.Duration{0, 2 * time.Second, 3 * time.Second, time.Second, 3 * time.Second} {
		steps = append(steps, ssStep{advance: adv, client: in}, ssStep{client: mid}, ssStep{client: out},
			ssStep{}, ssStep{client: "bad,id"}, ssStep{client: "bad,id"}, ssStep{client: "bad,id"})
	}
	steps = append(steps, ssStep{advance: time.Minute, client: out})
	for name, w := range map[string]ssWorld{
		"share": func(clk *fakeclock.Clock) (*slowstart.Gate, error) {
			return slowstart.New(slowstart.Config{Window: 10 * time.Second, MinShare: 0.2, Clock: clk})
		},
		"budget": func(clk *fakeclock.Clock) (*slowstart.Gate, error) {
			b, err := limiter.NewLocal(limiter.PerSecond(1, 2), limiter.Config{Clock: clk})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { _ = b.Close() })
			return slowstart.New(slowstart.Config{Window: 10 * time.Second, MinShare: 0.2, Clock: clk, Budget: b})
		},
		"budget failed": func(clk *fakeclock.Clock) (*slowstart.Gate, error) {
			return slowstart.New(slowstart.Config{Window: 10 * time.Second, MinShare: 0.2, Clock: clk, Budget: ssBroken{}})
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, g := ssRunHTTP(t, w, steps), ssRunGRPC(t, w, steps)
			assert.Equal(t, h, g)
			kinds := map[string]int{}
			for _, o := range h {
				kinds[o.Kind]++
			}
			assert.Positive(t, kinds["ok"], "some calls admitted")
			assert.Positive(t, kinds["unavailable"], "some calls shed")
			assert.Equal(t, ssOutcome{Kind: "ok"}, h[len(h)-1], "warm: every client admitted")
		})
	}
}

// TestSlowStartClientHonoursPushback: a grpcmw.Client shed by a cold
// node's SlowStart comes back when the pushback says (plus at most its few
// milliseconds of slot jitter), and is served once the share has grown
// past its place.
func TestSlowStartClientHonoursPushback(t *testing.T) {
	clk := fakeclock.New(ssT0)
	g, err := slowstart.New(slowstart.Config{Window: 10 * time.Second, Clock: clk})
	require.NoError(t, err)
	type attempt struct {
		at   time.Time
		code codes.Code
	}
	var mu sync.Mutex
	var seen []attempt
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		mu.Lock()
		seen = append(seen, attempt{clk.Now(), status.Code(err)})
		mu.Unlock()
		return resp, err
	}
	id := slowstarttest.ClientAt(t, 0.6, 0.7)
	c, err := grpcmw.NewClient(grpcmw.ClientConfig{ClientID: id, Clock: clk, Retry: retry.Policy{MaxAttempts: 20, MaxWait: time.Minute}})
	require.NoError(t, err)
	conn := ssServe(t, g, record, grpc.WithChainUnaryInterceptor(c.UnaryInterceptor()))
	done := make(chan error, 1)
	go func() {
		_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		done <- err
	}()
	callErr := slowstarttest.Drive(t, clk, done)
	require.NoError(t, callErr)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(seen), 2, "a client at place 0.6 is shed at first")
	assert.LessOrEqual(t, len(seen), 6, "the pushback brings it back a few times, not in a busy loop")
	for _, a := range seen[:len(seen)-1] {
		assert.Equal(t, codes.Unavailable, a.code)
	}
	last := seen[len(seen)-1]
	assert.Equal(t, codes.OK, last.code)
	assert.GreaterOrEqual(t, last.at.Sub(ssT0), time.Duration(slowstarttest.Place(id)*float64(10*time.Second)))
	assert.Equal(t, uint64(len(seen)-1), g.Stats().ShedShare)
}

func TestSlowStartErrors(t *testing.T) {
	_, err := grpcmw.SlowStart(nil, grpcmw.SlowStartConfig{})
	assert.ErrorIs(t, err, grpcmw.ErrInvalidConfig)
	g, err := slowstart.New(slowstart.Config{MinShare: 0.5})
	require.NoError(t, err)
	_, err = grpcmw.SlowStart(g, grpcmw.SlowStartConfig{IPv4Prefix: 24,
		Key: func(context.Context, string) (string, error) { return "k", nil }})
	assert.ErrorIs(t, err, grpcmw.ErrInvalidConfig)
	assert.ErrorContains(t, err, "SlowStartConfig.IPv4Prefix")

	// the server-side error of a shed call
	in, err := grpcmw.SlowStart(g, grpcmw.SlowStartConfig{Key: func(context.Context, string) (string, error) {
		return slowstarttest.ClientAt(t, 0.6, 1), nil
	}})
	require.NoError(t, err)
	_, err = in.Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/svc/M"},
		func(context.Context, any) (any, error) { return nil, nil })
	assert.ErrorIs(t, err, grpcmw.ErrSlowStartShed)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "node warming up")
}
