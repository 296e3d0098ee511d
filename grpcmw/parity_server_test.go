package grpcmw_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// The parity test runs the same cases through a real net/http server and
// client and a real grpc-go server and client over loopback, and checks
// that both transports answer every step the same way: the outcome, the
// wait they tell and whether it is exact (a turn spread for the caller)
// or coarse, whether a ticket was issued, the notices, and whether the
// server logged a fault (Warn or Error) for it.
//
// Where the transports differ by design, the outcome is stated in terms
// both can carry, and the difference is checked on its own:
//
//   - A refusal whose exact wait has a fraction of a second: HTTP holds
//     the response for the fraction (on RateLimitConfig.Clock, which the
//     test advances by step.hold) and then sends the whole seconds left,
//     Retry-After and Herdcap-Retry-After-Ms alike, so that a plain client
//     sleeping Retry-After arrives at its turn; gRPC sends the whole wait
//     at once, to the millisecond (the pushback), since grpc-go sleeps
//     exactly that. The outcome's WaitMs is the wait from the decision:
//     for HTTP the hold plus what the response says.
//   - A coarse wait (a failed budget's or gate's, which every caller is
//     told alike): HTTP carries whole seconds only (Retry-After, rounded
//     up); gRPC's RetryInfo carries the duration itself, which the test
//     rounds up to whole seconds as HTTP does. Neither marks it exact.
//   - A client that is gone (its context canceled, or its deadline
//     passed, while the server decides): each client sees its own
//     context's error; the server answers to nobody (HTTP a 503, gRPC the
//     context's status). What must agree is that the handler did not run
//     and that the server logged no fault.
//
// A case should hold at most one fault of each kind within a second: the
// server throttles its records per kind, so a second one might not be
// logged.

// outcome is what a client saw of one call, transport-neutral.
type outcome struct {
	Kind   string // ok, quota (429 / ResourceExhausted), unavailable (503 / Unavailable), bad (400 / InvalidArgument), internal (500 / Internal), gone (the client's own context error)
	WaitMs int64  // the wait told, from the decision (see above)
	Exact  bool   // the wait is a turn: Herdcap-Retry-After-Ms; the pushback
	Ticket bool   // a ticket was issued
	Notice string // the notice list sent
	Fault  bool   // the server logged a record at Warn or above for the call
}

// neutralPolicy is a rate-limit policy of a case, built for each transport.
type neutralPolicy struct {
	name   string
	budget func(t *testing.T, clk *fakeclock.Clock) limiter.Budget
	key    string // "": the client's address; "tenant": the x-tenant field, ErrNoKey without it; "error"; "panic"
	limit  string // "": the budget's own; "panic"; "plan": by tenant (planLimits; an invalid one for tenant "bad")
	cost   bool   // the x-cost field's value, else 1
	stall  bool   // the budget is a stall (its own budget function unused)
	shadow bool
}

// planLimits are the per-request limits of the "plan" limit function.
var planLimits = map[string]limiter.Limit{
	"acme": limiter.Every(time.Minute, 1),
	"big":  limiter.Every(time.Second, 2),
	"bad":  {Rate: -1, Burst: 1}, // a plan table with a bug in it
}

// world is a case's server side, built afresh for each transport.
type world struct {
	policies []neutralPolicy
	skip     string // a method no interceptor looks at
	gate     func(t *testing.T, clk *fakeclock.Clock) *admission.Gate
	admitKey string // "": the default; "stall": waits for the request's context to end, and returns its error
	coord    func(t *testing.T, clk *fakeclock.Clock) *invalidate.Coordinator
}

// step is one call of a case.
type step struct {
	method string // "": Check
	client string // herdcap client ID ("" none)
	tenant string
	cost   string        // x-cost ("" none)
	ticket bool          // present the last ticket issued
	epoch  string        // herdcap epoch ("" none)
	gone   string        // "cancel": the client cancels once the server is deciding; "deadline": its deadline passes meanwhile
	hold   time.Duration // HTTP only: how long the refusal is held (see above)
	want   outcome
}

// stall is a budget, or a key function, that waits for the request's
// context to end and then returns its error, as a Redis call cut short by
// the context does; entered is told each time it starts waiting.
type stall struct{ entered chan struct{} }

func newStall() *stall { return &stall{entered: make(chan struct{}, 16)} }

func (s *stall) wait(ctx context.Context) error {
	s.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stall) Take(ctx context.Context, _ limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, s.wait(ctx)
}

// stalls are the stall budgets and key functions of a case's run, by
// transport, so that a gone step knows when the server is deciding.
type stalls struct {
	mu sync.Mutex
	s  []*stall
}

func (ss *stalls) add(s *stall) *stall {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.s = append(ss.s, s)
	return s
}

// entered waits until one of the stalls has started waiting.
func (ss *stalls) entered(t *testing.T) {
	t.Helper()
	ss.mu.Lock()
	s := ss.s
	ss.mu.Unlock()
	require.NotEmpty(t, s, "a gone step needs a stall in its world")
	select {
	case <-s[0].entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never started deciding")
	}
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

// failClosed returns a budget failing as a fail-closed Redis budget does
// while Redis is down: limiter.ErrUnavailable, with a wait (the breaker's
// open period) that every caller is told alike. (A real one is
// TestRedisFailClosedIsUnavailable's and httpmw's TestRedisFailClosedIs503.)
func failClosed(wait time.Duration) func(*testing.T, *fakeclock.Clock) limiter.Budget {
	return func(*testing.T, *fakeclock.Clock) limiter.Budget {
		return failingBudget{err: limiter.ErrUnavailable, ra: wait}
	}
}

type failingBudget struct {
	err error
	ra  time.Duration
}

func (f failingBudget) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{RetryAfter: f.ra, Via: limiter.ViaFallback}, f.err
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
		[]step{{want: outcome{Kind: "ok"}}, {want: outcome{Kind: "quota", WaitMs: 1000, Exact: true}},
			// the next refusal of the key is told the next interval: no lockstep
			{want: outcome{Kind: "quota", WaitMs: 2000, Exact: true}}}},
	// A wait with a fraction of a second: HTTP holds the fraction, gRPC
	// sends it all (see above); both tell the same turns.
	{"rate limit: deny, a fraction of a second", world{policies: []neutralPolicy{{budget: budget(limiter.Every(1500*time.Millisecond, 1))}}},
		[]step{{want: outcome{Kind: "ok"}},
			{hold: 500 * time.Millisecond, want: outcome{Kind: "quota", WaitMs: 1500, Exact: true}},
			{want: outcome{Kind: "quota", WaitMs: 3000, Exact: true}}, // whole seconds: nothing to hold
			{hold: 500 * time.Millisecond, want: outcome{Kind: "quota", WaitMs: 4500, Exact: true}}}},
	{"rate limit: unavailable", world{policies: []neutralPolicy{{budget: closedBudget}}},
		[]step{{want: outcome{Kind: "unavailable", WaitMs: 1000, Fault: true}}}},
	// A failed budget's own wait (a breaker's open period) is coarse too:
	// every caller is told it alike.
	{"rate limit: unavailable, the budget's wait", world{policies: []neutralPolicy{{budget: failClosed(1500 * time.Millisecond)}}},
		[]step{{want: outcome{Kind: "unavailable", WaitMs: 2000, Fault: true}}}},
	{"rate limit: gone, canceled", world{policies: []neutralPolicy{{stall: true}}},
		[]step{{gone: "cancel", want: outcome{Kind: "gone"}}}},
	{"rate limit: gone, deadline", world{policies: []neutralPolicy{{stall: true}}},
		[]step{{gone: "deadline", want: outcome{Kind: "gone"}}}},
	{"rate limit: no key", world{policies: []neutralPolicy{{key: "tenant", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "bad"}}, {tenant: "acme", want: outcome{Kind: "ok"}}}},
	{"rate limit: key function error", world{policies: []neutralPolicy{{key: "error", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal", Fault: true}}}},
	{"rate limit: key function panic", world{policies: []neutralPolicy{{key: "panic", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal", Fault: true}}}},
	{"rate limit: limit function panic", world{policies: []neutralPolicy{{limit: "panic", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "internal", Fault: true}}}},
	{"rate limit: per-request limit", world{policies: []neutralPolicy{{key: "tenant", limit: "plan", budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{tenant: "acme", want: outcome{Kind: "ok"}}, {tenant: "acme", want: outcome{Kind: "quota", WaitMs: 60_000, Exact: true}},
			{tenant: "big", want: outcome{Kind: "ok"}}, {tenant: "big", want: outcome{Kind: "ok"}},
			{tenant: "big", want: outcome{Kind: "quota", WaitMs: 1000, Exact: true}},
			{tenant: "none", want: outcome{Kind: "ok"}}, // no plan: the budget's own limit
			{tenant: "none", want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}}},
	// An invalid per-request limit is answered before any budget is
	// asked: the ip policy's only token is still there afterwards.
	{"rate limit: invalid per-request limit", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 1))},
		{name: "plans", key: "tenant", limit: "plan", budget: budget(limiter.Every(time.Hour, 5))}}},
		[]step{{tenant: "bad", want: outcome{Kind: "internal", Fault: true}},
			{tenant: "acme", want: outcome{Kind: "ok"}},
			{tenant: "acme", want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}}}, // ip's token, spent by the call before
	{"rate limit: cost", world{policies: []neutralPolicy{{cost: true, budget: budget(limiter.Every(time.Hour, 3))}}},
		[]step{{cost: "2", want: outcome{Kind: "ok"}},
			{cost: "2", want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}, // one token short
			{cost: "0", want: outcome{Kind: "ok"}},                                    // a peek
			{cost: "1", want: outcome{Kind: "ok"}}}},
	// A cost no budget can grant is answered before any budget is asked.
	{"rate limit: impossible cost", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 2))},
		{name: "work", cost: true, budget: budget(limiter.Every(time.Hour, 3))}}},
		[]step{{cost: "4", want: outcome{Kind: "internal", Fault: true}},
			{cost: "1", want: outcome{Kind: "ok"}}, {cost: "1", want: outcome{Kind: "ok"}},
			{cost: "1", want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}}}, // ip: two tokens, both spent by the two calls before
	{"rate limit: two policies, the most restrictive decides", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 3))},
		{name: "tenant", key: "tenant", budget: budget(limiter.Every(time.Minute, 1))}}},
		[]step{{tenant: "acme", want: outcome{Kind: "ok"}}, {tenant: "acme", want: outcome{Kind: "quota", WaitMs: 60_000, Exact: true}},
			{tenant: "other", want: outcome{Kind: "ok"}},
			{tenant: "other", want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}}}, // ip: spent by three calls, refused or not
	{"rate limit: shadow never refuses", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 5))},
		{name: "trial", budget: budget(limiter.Every(time.Hour, 1)), shadow: true}}},
		[]step{{want: outcome{Kind: "ok"}}, {want: outcome{Kind: "ok"}}, {want: outcome{Kind: "ok"}}}},
	{"rate limit: shadow failure never fails", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 5))},
		{name: "trial", budget: closedBudget, shadow: true}}},
		[]step{{want: outcome{Kind: "ok", Fault: true}}}}, // logged at Warn
	// A shadow policy's invalid limit is a server bug (Error), and the
	// policy is left out.
	{"rate limit: shadow policy's invalid limit", world{policies: []neutralPolicy{
		{name: "ip", budget: budget(limiter.Every(time.Hour, 5))},
		{name: "trial", key: "tenant", limit: "plan", budget: budget(limiter.Every(time.Hour, 1)), shadow: true}}},
		[]step{{tenant: "bad", want: outcome{Kind: "ok", Fault: true}}}},
	{"rate limit: skip", world{skip: listMethod, policies: []neutralPolicy{{budget: budget(limiter.Every(time.Hour, 1))}}},
		[]step{{want: outcome{Kind: "ok"}}, {method: listMethod, want: outcome{Kind: "ok"}},
			{method: listMethod, want: outcome{Kind: "ok"}}, {want: outcome{Kind: "quota", WaitMs: 3_600_000, Exact: true}}}},
	{"admission: admitted, then a slot", world{gate: gate(limiter.PerSecond(2, 1), admission.Config{})},
		[]step{{client: "alice", want: outcome{Kind: "ok"}}, {client: "bob", want: outcome{Kind: "unavailable", WaitMs: 864, Exact: true}},
			{client: "carol", want: outcome{Kind: "unavailable", WaitMs: 1230, Exact: true}}}},
	// bob's slot (864 ms) is past the 100 ms horizon: deferred, without a
	// slot, spread over the horizon.
	{"admission: deferred past the horizon", world{gate: gate(limiter.PerSecond(2, 1), admission.Config{Horizon: 100 * time.Millisecond})},
		[]step{{client: "alice", want: outcome{Kind: "ok"}}, {client: "bob", want: outcome{Kind: "unavailable", WaitMs: 469, Exact: true}},
			{client: "carol", want: outcome{Kind: "unavailable", WaitMs: 493, Exact: true}}}},
	{"admission: a ticket rejoins", world{gate: gate(limiter.Every(time.Hour, 1), admission.Config{TicketKeys: parityTicketKeys})},
		[]step{{client: "alice", want: outcome{Kind: "ok", Ticket: true}},
			{client: "alice", ticket: true, want: outcome{Kind: "ok", Ticket: true}},
			// another's ticket, or none: a new session, deferred (its slot
			// would be past the 1 min horizon)
			{client: "bob", ticket: true, want: outcome{Kind: "unavailable", WaitMs: 3_581_183, Exact: true}},
			{client: "alice", want: outcome{Kind: "unavailable", WaitMs: 3_573_914, Exact: true}}}},
	// A closed gate says no wait: the default, coarse.
	{"admission: unavailable", world{gate: func(t *testing.T, clk *fakeclock.Clock) *admission.Gate {
		g := gate(limiter.PerSecond(1, 1), admission.Config{})(t, clk)
		require.NoError(t, g.Close())
		return g
	}}, []step{{client: "alice", want: outcome{Kind: "unavailable", WaitMs: 1000, Fault: true}}}},
	{"admission: malformed client ID", world{gate: gate(limiter.PerSecond(1, 1), admission.Config{})},
		[]step{{client: "a,b", want: outcome{Kind: "bad"}}}},
	// A Key function cut short by the request's context: the caller left,
	// which is no fault of the server's (nor Internal).
	{"admission: gone while keyed", world{gate: gate(limiter.PerSecond(1, 1), admission.Config{}), admitKey: "stall"},
		[]step{{gone: "cancel", want: outcome{Kind: "gone"}}, {gone: "deadline", want: outcome{Kind: "gone"}}}},
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
				require.Len(t, outs, len(tc.steps), tr)
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

// costOf returns the cost a call names, else 1.
func costOf(v string) int {
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return 1
}

// server counts the calls the server side has finished, and the faults
// its log holds, so that each step's outcome is read once the server is
// done with it (a gone client returns before the server has decided).
type server struct {
	logs     logtest.Buffer
	finished atomic.Int64
	served   atomic.Int64 // calls that reached the handler
}

func (s *server) logger() *slog.Logger { return logtest.NewLogger(&s.logs) }

// faults counts the records at Warn or above.
func (s *server) faults() int {
	l := s.logs.String()
	return strings.Count(l, "level=WARN") + strings.Count(l, "level=ERROR")
}

// settle waits until the server has finished n calls, checks that the
// last reached the handler if and only if it was answered ok, and reports
// whether the server logged a fault since the count before.
func (s *server) settle(t *testing.T, n int64, before int, served int64, o outcome) bool {
	t.Helper()
	require.Eventually(t, func() bool { return s.finished.Load() >= n }, 10*time.Second, time.Millisecond,
		"the server never finished call %d", n)
	assert.Equal(t, o.Kind == "ok", s.served.Load() > served, "call %d (%s) reached the handler", n, o.Kind)
	return s.faults() > before
}

// stepCtx returns the context of a step's call, its cancel (called once
// the step is over), and for a gone step how the client gives up: it
// cancels once the server is deciding, or lets its deadline pass.
func stepCtx(t *testing.T, s step, ss *stalls) (ctx context.Context, cancel func(), giveUp func()) {
	switch s.gone {
	case "cancel":
		ctx, cancel := context.WithCancel(t.Context())
		return ctx, cancel, func() { ss.entered(t); cancel() }
	case "deadline":
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		return ctx, cancel, func() { ss.entered(t) }
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second) // bounds a call that would hang
	return ctx, cancel, func() {}
}

func runHTTP(t *testing.T, w world, steps []step) []outcome {
	t.Helper()
	clk := fakeclock.New(parityT0)
	holdClk := fakeclock.New(parityT0) // the holds', apart from the budgets'
	var ss stalls
	sv := &server{}
	var h http.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { sv.served.Add(1) })
	skip := func(r *http.Request) bool { return w.skip != "" && r.URL.Path == w.skip }
	if w.coord != nil {
		inv, err := httpmw.Invalidate(w.coord(t, clk), httpmw.InvalidateConfig{Skip: skip, Logger: sv.logger()})
		require.NoError(t, err)
		h = inv(h)
	}
	if w.gate != nil {
		cfg := httpmw.AdmitConfig{Skip: skip, Logger: sv.logger()}
		if w.admitKey == "stall" {
			st := ss.add(newStall())
			cfg.Key = func(r *http.Request) (string, error) { return "", st.wait(r.Context()) }
		}
		adm, err := httpmw.Admit(w.gate(t, clk), cfg)
		require.NoError(t, err)
		h = adm(h)
	}
	if w.policies != nil {
		var ps []httpmw.Policy
		for _, np := range w.policies {
			p := httpmw.Policy{Name: np.name, Shadow: np.shadow}
			if np.stall {
				p.Budget = ss.add(newStall())
			} else {
				p.Budget = np.budget(t, clk)
			}
			switch np.key {
			case "tenant":
				p.Key = func(r *http.Request) (string, error) { return tenantOf(r.Header.Get("X-Tenant"), httpmw.ErrNoKey) }
			case "error":
				p.Key = func(*http.Request) (string, error) { return "", errors.New("tenant db down") }
			case "panic":
				p.Key = func(*http.Request) (string, error) { panic("tenant table not loaded") }
			}
			switch np.limit {
			case "panic":
				p.Limit = func(*http.Request) (limiter.Limit, error) { panic("plans not loaded") }
			case "plan":
				p.Limit = func(r *http.Request) (limiter.Limit, error) { return planLimits[r.Header.Get("X-Tenant")], nil }
			}
			if np.cost {
				p.Cost = func(r *http.Request) int { return costOf(r.Header.Get("X-Cost")) }
			}
			ps = append(ps, p)
		}
		rl, err := httpmw.RateLimit(httpmw.RateLimitConfig{Skip: skip, Clock: holdClk, Logger: sv.logger()}, ps...)
		require.NoError(t, err)
		h = rl(h)
	}
	inner := h
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		defer sv.finished.Add(1)
		inner.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)

	var outs []outcome
	ticket := ""
	for i, s := range steps {
		method := s.method
		if method == "" {
			method = checkMethod
		}
		ctx, cancel, giveUp := stepCtx(t, s, &ss)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+method, nil)
		require.NoError(t, err)
		for k, v := range map[string]string{"Herdcap-Client": s.client, "X-Tenant": s.tenant, "Herdcap-Epoch": s.epoch, "X-Cost": s.cost} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if s.ticket {
			req.Header.Set("Herdcap-Ticket", ticket)
		}
		before, served := sv.faults(), sv.served.Load()
		type result struct {
			res *http.Response
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := srv.Client().Do(req)
			done <- result{res, err}
		}()
		if s.hold > 0 {
			require.Eventually(t, func() bool { return holdClk.Pending() == 1 }, 10*time.Second, time.Millisecond, "step %d: the refusal is held", i)
			holdClk.Add(s.hold)
		}
		giveUp()
		var r result
		select {
		case r = <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("step %d: no answer", i)
		}
		cancel()
		var o outcome
		if r.err != nil {
			require.ErrorIs(t, r.err, ctx.Err(), "step %d: only a gone client fails", i)
			o.Kind = "gone"
		} else {
			res := r.res
			res.Body.Close()
			o = outcome{Kind: map[int]string{200: "ok", 429: "quota", 503: "unavailable", 400: "bad", 500: "internal"}[res.StatusCode],
				Notice: res.Header.Get("Herdcap-Invalidate")}
			if v := res.Header.Get("Herdcap-Ticket"); v != "" {
				o.Ticket, ticket = true, v
			}
			if res.StatusCode == 429 || res.StatusCode == 503 {
				secs, err := strconv.ParseInt(res.Header.Get("Retry-After"), 10, 64)
				require.NoError(t, err)
				o.WaitMs = secs * 1000
				if ms := res.Header.Get("Herdcap-Retry-After-Ms"); ms != "" {
					o.Exact = true
					o.WaitMs, err = strconv.ParseInt(ms, 10, 64)
					require.NoError(t, err)
					// Retry-After is the same wait in whole seconds:
					// exactly, after a hold; rounded up, without one.
					if s.hold > 0 {
						assert.Equal(t, o.WaitMs, secs*1000, "step %d: after the hold, whole seconds are left", i)
					} else {
						assert.Equal(t, (o.WaitMs+999)/1000, secs, "step %d", i)
					}
				}
				o.WaitMs += s.hold.Milliseconds()
			}
		}
		o.Fault = sv.settle(t, int64(i+1), before, served, o)
		outs = append(outs, o)
	}
	return outs
}

func runGRPC(t *testing.T, w world, steps []step) []outcome {
	t.Helper()
	clk := fakeclock.New(parityT0)
	var ss stalls
	sv := &server{}
	skip := func(m string) bool { return w.skip != "" && m == w.skip }
	unary := []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		defer sv.finished.Add(1)
		return h(ctx, req)
	}}
	handler := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		sv.served.Add(1)
		return h(ctx, req)
	}
	if w.policies != nil {
		var ps []grpcmw.Policy
		for _, np := range w.policies {
			p := grpcmw.Policy{Name: np.name, Shadow: np.shadow}
			if np.stall {
				p.Budget = ss.add(newStall())
			} else {
				p.Budget = np.budget(t, clk)
			}
			switch np.key {
			case "tenant":
				p.Key = func(ctx context.Context, _ string) (string, error) {
					return tenantOf(mdValue(ctx, "x-tenant"), grpcmw.ErrNoKey)
				}
			case "error":
				p.Key = func(context.Context, string) (string, error) { return "", errors.New("tenant db down") }
			case "panic":
				p.Key = func(context.Context, string) (string, error) { panic("tenant table not loaded") }
			}
			switch np.limit {
			case "panic":
				p.Limit = func(context.Context, string) (limiter.Limit, error) { panic("plans not loaded") }
			case "plan":
				p.Limit = func(ctx context.Context, _ string) (limiter.Limit, error) {
					return planLimits[mdValue(ctx, "x-tenant")], nil
				}
			}
			if np.cost {
				p.Cost = func(ctx context.Context, _ string) int { return costOf(mdValue(ctx, "x-cost")) }
			}
			ps = append(ps, p)
		}
		rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{Skip: skip, LimitHealth: true, Logger: sv.logger()}, ps...)
		require.NoError(t, err)
		unary = append(unary, rl.Unary)
	}
	if w.gate != nil {
		cfg := grpcmw.AdmitConfig{Skip: skip, LimitHealth: true, Logger: sv.logger()}
		if w.admitKey == "stall" {
			st := ss.add(newStall())
			cfg.Key = func(ctx context.Context, _ string) (string, error) { return "", st.wait(ctx) }
		}
		adm, err := grpcmw.Admit(w.gate(t, clk), cfg)
		require.NoError(t, err)
		unary = append(unary, adm.Unary)
	}
	if w.coord != nil {
		inv, err := grpcmw.Invalidate(w.coord(t, clk), grpcmw.InvalidateConfig{Skip: skip, NotifyHealth: true, Logger: sv.logger()})
		require.NoError(t, err)
		unary = append(unary, inv.Unary)
	}
	unary = append(unary, handler)
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
	for i, s := range steps {
		var kv []string
		for k, v := range map[string]string{"herdcap-client": s.client, "x-tenant": s.tenant, "herdcap-epoch": s.epoch, "x-cost": s.cost} {
			if v != "" {
				kv = append(kv, k, v)
			}
		}
		if s.ticket {
			kv = append(kv, "herdcap-ticket", ticket)
		}
		ctx, cancel, giveUp := stepCtx(t, s, &ss)
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
		before, served := sv.faults(), sv.served.Load()
		var header, trailer metadata.MD
		errc := make(chan error, 1)
		go func() {
			var err error
			if s.method == listMethod {
				_, err = healthpb.NewHealthClient(conn).List(ctx, &healthpb.HealthListRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
			} else {
				_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
			}
			errc <- err
		}()
		giveUp()
		var err error
		select {
		case err = <-errc:
		case <-time.After(15 * time.Second):
			t.Fatalf("step %d: no answer", i)
		}
		cancel()
		o := outcome{Kind: map[codes.Code]string{codes.OK: "ok", codes.ResourceExhausted: "quota", codes.Unavailable: "unavailable",
			codes.InvalidArgument: "bad", codes.Internal: "internal", codes.Canceled: "gone", codes.DeadlineExceeded: "gone"}[status.Code(err)]}
		if v := header.Get("herdcap-invalidate"); len(v) == 1 {
			o.Notice = v[0]
		}
		for _, md := range []metadata.MD{header, trailer} {
			if v := md.Get("herdcap-ticket"); len(v) == 1 {
				o.Ticket, ticket = true, v[0]
			}
		}
		if v := trailer.Get("grpc-retry-pushback-ms"); len(v) == 1 {
			o.Exact = true
			o.WaitMs, err = strconv.ParseInt(v[0], 10, 64)
			require.NoError(t, err)
		} else if err != nil {
			for _, d := range status.Convert(err).Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					// A coarse wait, rounded up to whole seconds as
					// HTTP's Retry-After must be (see above).
					o.WaitMs = (ri.GetRetryDelay().AsDuration() + time.Second - 1).Milliseconds() / 1000 * 1000
				}
			}
		}
		o.Fault = sv.settle(t, int64(i+1), before, served, o)
		outs = append(outs, o)
	}
	return outs
}

// mdValue returns the one value of key in ctx's incoming metadata, or "".
func mdValue(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) == 1 {
		return v[0]
	}
	return ""
}
