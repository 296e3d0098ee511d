package grpcmw_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	"github.com/herdcap/herdcap/limiter/admission"
)

// The parity test runs the same cases through a real net/http server and
// client and a real grpc-go server and client over loopback, and checks
// that both transports answer every step the same way: the outcome, the
// exact wait they tell, whether a ticket was issued, the notices.

// outcome is what a client saw of one call, transport-neutral.
type outcome struct {
	Kind   string // ok, quota (429 / ResourceExhausted), unavailable (503 / Unavailable), bad (400 / InvalidArgument), internal (500 / Internal)
	WaitMs int64  // the exact wait told (Herdcap-Retry-After-Ms, else Retry-After; the pushback)
	Ticket bool   // a ticket was issued
	Notice string // the notice list sent
}

// neutralPolicy is a rate-limit policy of a case, built for each transport.
type neutralPolicy struct {
	name   string
	budget func(t *testing.T, clk *fakeclock.Clock) limiter.Budget
	key    string // "": the client's address; "tenant": the x-tenant field, ErrNoKey without it; "error"; "panic"
	limit  string // "": the budget's own; "panic"
	shadow bool
}

// world is a case's server side, built afresh for each transport.
type world struct {
	policies []neutralPolicy
	skip     string // a method no interceptor looks at
	gate     func(t *testing.T, clk *fakeclock.Clock) *admission.Gate
	coord    func(t *testing.T, clk *fakeclock.Clock) *invalidate.Coordinator
}

// step is one call of a case.
type step struct {
	method string // "": Check
	client string // herdcap client ID ("" none)
	tenant string
	ticket bool   // present the last ticket issued
	epoch  string // herdcap epoch ("" none)
	want   outcome
}

// The methods the steps call: Check, and List (which the skip case
// exempts).
const (
	checkMethod = "/grpc.health.v1.Health/Check"
	listMethod  = "/grpc.health.v1.Health/List"
)

var parityT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// budget returns a real Local budget of l on the case's clock.
func budget(l limiter.Limit) func(*testing.T, *fakeclock.Clock) limiter.Budget {
	return func(t *testing.T, clk *fakeclock.Clock) limiter.Budget {
		b, err := limiter.NewLocal(l, limiter.Config{Clock: clk})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

// closedBudget is a real Local budget, closed: every Take fails.
func closedBudget(t *testing.T, clk *fakeclock.Clock) limiter.Budget {
	b := budget(limiter.PerSecond(1, 1))(t, clk)
	require.NoError(t, b.(*limiter.Local).Close())
	return b
}

var parityTicketKeys = [][]byte{[]byte("a 32-byte key for herdcap tests!")}

func gate(l limiter.Limit, cfg admission.Config) func(*testing.T, *fakeclock.Clock) *admission.Gate {
	return func(t *testing.T, clk *fakeclock.Clock) *admission.Gate {
		cfg.Clock = clk
		g, err := admission.New(l, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = g.Close() })
		return g
	}
}

// released returns a coordinator holding one released rollout.
func releasedCoord(t *testing.T, clk *fakeclock.Clock) *invalidate.Coordinator {
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, CacheTTL: -1})
	require.NoError(t, err)
	_, err = c.Start(context.Background(), invalidate.Rollout{ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 1,
		Rate: 100, Clients: 10, Coverage: 0.1, By: "test"})
	require.NoError(t, err)
	clk.Add(time.Second)
	require.NoError(t, c.Advance(context.Background()))
	return c
}

var parityCases = []struct {
	name  string
	world world
	steps []step
}{
	{"rate limit: allow", world{policies: []neutralPolicy{{budget: budget(limiter.Every(time.Hour, 2))}}},
		[]step{{want: outcome{Kind: "ok"}}, {want: outcome{Kind: "ok"}}}},
	{"rate limit: deny, told the wait", world{policies: []neutralPolicy{{budget: budget(limiter.Every(time.Second, 1))}}},
		[]step{{want: outcome{Kind: "ok"}}, {want: outcome{Kind: "quota", WaitMs: 1000}},
			// the next refusal of the key is told the next interval: no lockstep
			{want: outcome{Kind: "quota", WaitMs: 2000}}}},
	{"rate limit: unavailable", world{policies: []neutralPolicy{{budget: closedBudget}}},
		[]step{{want: outcome{Kind: "unavailable", WaitMs: 1000}}}},
	{"rate limit: no key", world{policies: []neutralPolicy{{key: "tenant", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "bad"}}, {tenant: "acme", want: outcome{Kind: "ok"}}}},
	{"rate limit: key function error", world{policies: []neutralPolicy{{key: "error", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal"}}}},
	{"rate limit: key function panic", world{policies: []neutralPolicy{{key: "panic", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal"}}}},
	{"rate limit: limit function panic", world{policies: []neutralPolicy{{limit: "panic", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal"}}}},
	{"rate limit: two policies, the most restrictive decides", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 3))},
		{name: "tenant", key: "tenant", budget: budget(limiter.Every(time.Minute, 1))}}},
		[]step{{tenant: "acme", want: outcome{Kind: "ok"}}, {tenant: "acme", want: outcome{Kind: "quota", WaitMs: 60_000}},
			{tenant: "other", want: outcome{Kind: "ok"}},
			{tenant: "other", want: outcome{Kind: "quota", WaitMs: 3_600_000}}}}, // ip: spent by three calls, refused or not
	{"rate limit: shadow never refuses", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 5))},
		{name: "trial", budget: budget(limiter.Every(time.Hour, 1)), shadow: true}}},
		[]step{{want: outcome{Kind: "ok"}}, {want: outcome{Kind: "ok"}}, {want: outcome{Kind: "ok"}}}},
	{"rate limit: shadow failure never fails", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 5))},
		{name: "trial", budget: closedBudget, shadow: true}}},
		[]step{{want: outcome{Kind: "ok"}}}},
	{"rate limit: skip", world{skip: listMethod, policies: []neutralPolicy{{budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "ok"}}, {method: listMethod, want: outcome{Kind: "ok"}},
			{method: listMethod, want: outcome{Kind: "ok"}}, {want: outcome{Kind: "quota", WaitMs: 3_600_000}}}},
	{"admission: admitted, then a slot", world{gate: gate(limiter.PerSecond(2, 1), admission.Config{})},
		[]step{{client: "alice", want: outcome{Kind: "ok"}}, {client: "bob", want: outcome{Kind: "unavailable", WaitMs: 864}},
			{client: "carol", want: outcome{Kind: "unavailable", WaitMs: 1230}}}},
	// bob's slot (864 ms) is past the 100 ms horizon: deferred, without a
	// slot, spread over the horizon.
	{"admission: deferred past the horizon", world{gate: gate(limiter.PerSecond(2, 1), admission.Config{Horizon: 100 * time.Millisecond})},
		[]step{{client: "alice", want: outcome{Kind: "ok"}}, {client: "bob", want: outcome{Kind: "unavailable", WaitMs: 469}},
			{client: "carol", want: outcome{Kind: "unavailable", WaitMs: 493}}}},
	{"admission: a ticket rejoins", world{gate: gate(limiter.Every(time.Hour, 1), admission.Config{TicketKeys: parityTicketKeys})},
		[]step{{client: "alice", want: outcome{Kind: "ok", Ticket: true}},
			{client: "alice", ticket: true, want: outcome{Kind: "ok", Ticket: true}},
			// another's ticket, or none: a new session, deferred (its slot
			// would be past the 1 min horizon)
			{client: "bob", ticket: true, want: outcome{Kind: "unavailable", WaitMs: 3_581_183}},
			{client: "alice", want: outcome{Kind: "unavailable", WaitMs: 3_573_914}}}},
	{"admission: unavailable", world{gate: func(t *testing.T, clk *fakeclock.Clock) *admission.Gate {
		g := gate(limiter.PerSecond(1, 1), admission.Config{})(t, clk)
		require.NoError(t, g.Close())
		return g
	}}, []step{{client: "alice", want: outcome{Kind: "unavailable", WaitMs: 1000}}}},
	{"admission: malformed client ID", world{gate: gate(limiter.PerSecond(1, 1), admission.Config{})},
		[]step{{client: "a,b", want: outcome{Kind: "bad"}}}},
	{"notices", world{coord: releasedCoord},
		[]step{{client: "c1", epoch: "0", want: outcome{Kind: "ok", Notice: `"tag:catalog";epoch=1767225600000;id="catalog-v2"`}},
			{client: "c1", epoch: "1767225600000", want: outcome{Kind: "ok"}},
			{client: "c1", want: outcome{Kind: "ok"}},
			{client: "c1", epoch: "-1", want: outcome{Kind: "bad"}}}},
}

// TestServerSideParity runs every case through both transports.
func TestServerSideParity(t *testing.T) {
	for _, tc := range parityCases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string][]outcome{"http": runHTTP(t, tc.world, tc.steps), "grpc": runGRPC(t, tc.world, tc.steps)}
			for tr, outs := range got {
				for i, s := range tc.steps {
					assert.Equal(t, s.want, outs[i], "%s: step %d", tr, i)
				}
			}
			assert.Equal(t, got["http"], got["grpc"], "the transports answer alike")
		})
	}
}

// tenantOf returns the tenant a call names, or ErrNoKey (wrapped).
func tenantOf(v string, noKey error) (string, error) {
	if v == "" {
		return "", fmt.Errorf("no tenant: %w", noKey)
	}
	return "tenant:" + v, nil
}

func runHTTP(t *testing.T, w world, steps []step) []outcome {
	t.Helper()
	clk := fakeclock.New(parityT0)
	var h http.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	skip := func(r *http.Request) bool { return w.skip != "" && r.URL.Path == w.skip }
	if w.coord != nil {
		inv, err := httpmw.Invalidate(w.coord(t, clk), httpmw.InvalidateConfig{Skip: skip})
		require.NoError(t, err)
		h = inv(h)
	}
	if w.gate != nil {
		adm, err := httpmw.Admit(w.gate(t, clk), httpmw.AdmitConfig{Skip: skip})
		require.NoError(t, err)
		h = adm(h)
	}
	if w.policies != nil {
		var ps []httpmw.Policy
		for _, np := range w.policies {
			p := httpmw.Policy{Name: np.name, Budget: np.budget(t, clk), Shadow: np.shadow}
			switch np.key {
			case "tenant":
				p.Key = func(r *http.Request) (string, error) { return tenantOf(r.Header.Get("X-Tenant"), httpmw.ErrNoKey) }
			case "error":
				p.Key = func(*http.Request) (string, error) { return "", errors.New("tenant db down") }
			case "panic":
				p.Key = func(*http.Request) (string, error) { panic("tenant table not loaded") }
			}
			if np.limit == "panic" {
				p.Limit = func(*http.Request) (limiter.Limit, error) { panic("plans not loaded") }
			}
			ps = append(ps, p)
		}
		rl, err := httpmw.RateLimit(httpmw.RateLimitConfig{Skip: skip}, ps...)
		require.NoError(t, err)
		h = rl(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	var outs []outcome
	ticket := ""
	for _, s := range steps {
		method := s.method
		if method == "" {
			method = checkMethod
		}
		req, err := http.NewRequest(http.MethodGet, srv.URL+method, nil)
		require.NoError(t, err)
		for k, v := range map[string]string{"Herdcap-Client": s.client, "X-Tenant": s.tenant, "Herdcap-Epoch": s.epoch} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if s.ticket {
			req.Header.Set("Herdcap-Ticket", ticket)
		}
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		o := outcome{Kind: map[int]string{200: "ok", 429: "quota", 503: "unavailable", 400: "bad", 500: "internal"}[res.StatusCode],
			Notice: res.Header.Get("Herdcap-Invalidate")}
		if v := res.Header.Get("Herdcap-Ticket"); v != "" {
			o.Ticket, ticket = true, v
		}
		if res.StatusCode == 429 || res.StatusCode == 503 {
			if ms := res.Header.Get("Herdcap-Retry-After-Ms"); ms != "" {
				o.WaitMs, err = strconv.ParseInt(ms, 10, 64)
			} else {
				o.WaitMs, err = strconv.ParseInt(res.Header.Get("Retry-After"), 10, 64)
				o.WaitMs *= 1000
			}
			require.NoError(t, err)
		}
		outs = append(outs, o)
	}
	return outs
}

func runGRPC(t *testing.T, w world, steps []step) []outcome {
	t.Helper()
	clk := fakeclock.New(parityT0)
	skip := func(m string) bool { return w.skip != "" && m == w.skip }
	var unary []grpc.UnaryServerInterceptor
	if w.policies != nil {
		var ps []grpcmw.Policy
		for _, np := range w.policies {
			p := grpcmw.Policy{Name: np.name, Budget: np.budget(t, clk), Shadow: np.shadow}
			switch np.key {
			case "tenant":
				p.Key = func(ctx context.Context, _ string) (string, error) {
					v := metadata.ValueFromIncomingContext(ctx, "x-tenant")
					if len(v) != 1 {
						return tenantOf("", grpcmw.ErrNoKey)
					}
					return tenantOf(v[0], grpcmw.ErrNoKey)
				}
			case "error":
				p.Key = func(context.Context, string) (string, error) { return "", errors.New("tenant db down") }
			case "panic":
				p.Key = func(context.Context, string) (string, error) { panic("tenant table not loaded") }
			}
			if np.limit == "panic" {
				p.Limit = func(context.Context, string) (limiter.Limit, error) { panic("plans not loaded") }
			}
			ps = append(ps, p)
		}
		rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{Skip: skip, LimitHealth: true}, ps...)
		require.NoError(t, err)
		unary = append(unary, rl.Unary)
	}
	if w.gate != nil {
		adm, err := grpcmw.Admit(w.gate(t, clk), grpcmw.AdmitConfig{Skip: skip, LimitHealth: true})
		require.NoError(t, err)
		unary = append(unary, adm.Unary)
	}
	if w.coord != nil {
		inv, err := grpcmw.Invalidate(w.coord(t, clk), grpcmw.InvalidateConfig{Skip: skip, NotifyHealth: true})
		require.NoError(t, err)
		unary = append(unary, inv.Unary)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unary...))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry())
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})

	var outs []outcome
	ticket := ""
	for _, s := range steps {
		var kv []string
		for k, v := range map[string]string{"herdcap-client": s.client, "x-tenant": s.tenant, "herdcap-epoch": s.epoch} {
			if v != "" {
				kv = append(kv, k, v)
			}
		}
		if s.ticket {
			kv = append(kv, "herdcap-ticket", ticket)
		}
		ctx := metadata.AppendToOutgoingContext(t.Context(), kv...)
		var header, trailer metadata.MD
		var err error
		if s.method == listMethod {
			_, err = healthpb.NewHealthClient(conn).List(ctx, &healthpb.HealthListRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
		} else {
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
		}
		o := outcome{Kind: map[codes.Code]string{codes.OK: "ok", codes.ResourceExhausted: "quota", codes.Unavailable: "unavailable",
			codes.InvalidArgument: "bad", codes.Internal: "internal"}[status.Code(err)]}
		if v := header.Get("herdcap-invalidate"); len(v) == 1 {
			o.Notice = v[0]
		}
		for _, md := range []metadata.MD{header, trailer} {
			if v := md.Get("herdcap-ticket"); len(v) == 1 {
				o.Ticket, ticket = true, v[0]
			}
		}
		if v := trailer.Get("grpc-retry-pushback-ms"); len(v) == 1 {
			o.WaitMs, err = strconv.ParseInt(v[0], 10, 64)
			require.NoError(t, err)
		}
		outs = append(outs, o)
	}
	return outs
}
