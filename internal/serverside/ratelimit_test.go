package serverside

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// req is the request of these tests: a map of what the functions read.
type req map[string]string

var errNoKey = errors.New("no key")

var testNames = Names{Component: "test", BadRequest: "400", Unavailable: "503", Internal: "500"}

// local returns a real Local budget of l on a stopped clock.
func local(t *testing.T, l limiter.Limit) *limiter.Local {
	t.Helper()
	b, err := limiter.NewLocal(l, limiter.Config{Clock: fakeclock.New(t0)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newGate returns a real in-process admission gate on a stopped clock.
func newGate(t *testing.T) *admission.Gate {
	t.Helper()
	g, err := admission.New(limiter.PerSecond(1, 1), admission.Config{Config: limiter.Config{Clock: fakeclock.New(t0)}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// keyOf keys a request by its "key" entry; "" is no key (errNoKey).
func keyOf(r req) (string, error) {
	if k := r["key"]; k != "" {
		return k, nil
	}
	return "", fmt.Errorf("missing: %w", errNoKey)
}

// failing always fails with err, as a fail-closed store in an outage.
type failing struct {
	err error
	ra  time.Duration
}

func (f failing) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{RetryAfter: f.ra, Via: limiter.ViaFallback}, f.err
}

// counting counts the requests reaching the budget it wraps.
type counting struct {
	limiter.Budget
	n int
}

func (c *counting) Take(ctx context.Context, r limiter.Request) (limiter.Decision, error) {
	c.n++
	return c.Budget.Take(ctx, r)
}

// countingLimit is a counting budget that reports the limit of the budget
// it wraps, as limiter.Local does.
type countingLimit struct {
	*counting
	limit func() limiter.Limit
}

func (c countingLimit) Limit() limiter.Limit { return c.limit() }

// opaque hides every method of a budget but Take (its Limit, say), as a
// user's own budget might.
type opaque struct{ b limiter.Budget }

func (o opaque) Take(ctx context.Context, r limiter.Request) (limiter.Decision, error) {
	return o.b.Take(ctx, r)
}

func newLimiter(t *testing.T, logs *logtest.Buffer, ps ...Policy[req]) *RateLimiter[req] {
	t.Helper()
	l, err := NewRateLimiter(RateLimitConfig[req]{
		Common:     Common[req]{Keys: Keys{NoKey: errNoKey}, Logger: logtest.NewLogger(logs), Names: testNames},
		Policies:   ps,
		DefaultKey: keyOf,
	})
	require.NoError(t, err)
	return l
}

// TestRateLimitVerdicts runs one request through policies whose answers
// conflict, and checks which one decides: Internal before Gone before
// Unavailable before Deny (the longest wait) before Pass; shadow policies
// never decide; non-shadow function failures, invalid per-request limits
// and costs no budget can grant end the request before any budget is
// asked (a shadow policy's is logged at Error, and the policy left out);
// only a Deny's wait is Exact.
func TestRateLimitVerdicts(t *testing.T) {
	spent := func(t *testing.T, wait time.Duration) limiter.Budget {
		b := local(t, limiter.Every(wait, 1))
		_, err := b.AllowN(context.Background(), "k", 1)
		require.NoError(t, err)
		return b
	}
	open := func(t *testing.T) limiter.Budget { return local(t, limiter.PerSecond(1000, 1000)) }
	down := failing{err: fmt.Errorf("redis at 10.0.0.1: %w", limiter.ErrUnavailable), ra: 3 * time.Second}
	panicky := func(req) (limiter.Limit, error) { panic("plans not loaded") }
	invalid := func(req) (limiter.Limit, error) { return limiter.Limit{Rate: -1, Burst: 1}, nil }
	for _, tc := range []struct {
		name     string
		policies func(t *testing.T) []Policy[req]
		r        req
		verdict  Verdict
		policy   int
		ra       time.Duration
		exact    bool
		asked    string // the names of the policies whose budgets were asked
		log      string // a record the log must hold
		level    string // its level, if it matters
	}{
		{"pass", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "b", Budget: open(t)}}
		}, req{"key": "k"}, Pass, -1, 0, false, "ab", "", ""},
		{"deny: the longest wait decides, exact", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: spent(t, time.Second)}, {Name: "b", Budget: spent(t, time.Minute)}, {Name: "c", Budget: open(t)}}
		}, req{"key": "k"}, Deny, 1, time.Minute, true, "abc", "rate limit exceeded", "DEBUG"},
		{"shadow refusal never decides", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: spent(t, time.Minute), Shadow: true}}
		}, req{"key": "k"}, Pass, -1, 0, false, "as", "shadow policy would refuse", "INFO"},
		{"shadow failure never decides", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: down, Shadow: true}}
		}, req{"key": "k"}, Pass, -1, 0, false, "as", "shadow policy's budget failed", "WARN"},
		{"shadow key failure never decides", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: open(t), Shadow: true,
				Key: func(req) (string, error) { panic("boom") }}}
		}, req{"key": "k"}, Pass, -1, 0, false, "a", "shadow policy's key function failed", "ERROR"},
		{"shadow policy without a key: the client's fault", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: open(t), Shadow: true,
				Key: func(req) (string, error) { return "", fmt.Errorf("no tenant: %w", errNoKey) }}}
		}, req{"key": "k"}, Pass, -1, 0, false, "a", "shadow policy found no usable rate-limit key", "DEBUG"},
		{"unavailable beats deny, not exact", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: spent(t, time.Minute)}, {Name: "b", Budget: down}}
		}, req{"key": "k"}, Unavailable, 1, 3 * time.Second, false, "ab", "rate limiter failed; answering 503", "ERROR"},
		{"unavailable without a wait: the default", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: failing{err: errors.New("boom")}}}
		}, req{"key": "k"}, Unavailable, 0, DefaultUnavailableRetryAfter, false, "a", "policy=a", "ERROR"},
		{"cost beyond the burst is internal, nothing asked", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: down}, {Name: "b", Budget: open(t), Cost: func(req) int { return 5000 }}}
		}, req{"key": "k"}, Internal, 1, 0, false, "", "cost function failed; answering 500", "ERROR"},
		{"cost beyond the per-request limit's burst", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "b", Budget: open(t), Cost: func(req) int { return 3 },
				Limit: func(req) (limiter.Limit, error) { return limiter.PerSecond(1, 2), nil }}}
		}, req{"key": "k"}, Internal, 1, 0, false, "", "cost 3 exceeds the burst of 2", "ERROR"},
		{"negative cost is internal, nothing asked", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "b", Budget: open(t), Cost: func(req) int { return -1 }}}
		}, req{"key": "k"}, Internal, 1, 0, false, "", "cost -1 is negative", "ERROR"},
		{"a budget that hides its burst rejects the cost itself", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "b", Budget: opaque{open(t)}, Cost: func(req) int { return 5000 }}}
		}, req{"key": "k"}, Internal, 1, 0, false, "ab", "the budget rejected the request's cost, key or limit; answering 500", "ERROR"},
		{"invalid per-request limit is internal, nothing asked", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "b", Budget: open(t), Limit: invalid}}
		}, req{"key": "k"}, Internal, 1, 0, false, "", "limiter: invalid limit", "ERROR"},
		{"shadow policy's invalid limit: a server bug, left out", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: open(t), Limit: invalid, Shadow: true}}
		}, req{"key": "k"}, Pass, -1, 0, false, "a", "shadow policy's limit function failed", "ERROR"},
		{"shadow policy's impossible cost: a server bug, left out", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}, {Name: "s", Budget: open(t), Cost: func(req) int { return 1001 }, Shadow: true}}
		}, req{"key": "k"}, Pass, -1, 0, false, "a", "shadow policy's cost function failed", "ERROR"},
		{"limit function error is internal, nothing asked", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)},
				{Name: "plans", Budget: open(t), Limit: func(req) (limiter.Limit, error) { return limiter.Limit{}, errors.New("plan db down") }}}
		}, req{"key": "k"}, Internal, 1, 0, false, "", "limit function failed; answering 500", "ERROR"},
		{"limit function panic is internal, named", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "plans", Budget: open(t), Limit: panicky}}
		}, req{"key": "k"}, Internal, 0, 0, false, "", "policy=plans", "ERROR"},
		{"cost function panic is internal", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t), Cost: func(req) int { panic(1) }}}
		}, req{"key": "k"}, Internal, 0, 0, false, "", "cost function panicked", "ERROR"},
		{"no key is a bad request", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t)}}
		}, req{}, BadRequest, 0, 0, false, "", "no usable rate-limit key; answering 400", "DEBUG"},
		{"key function error is internal", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t), Key: func(req) (string, error) { return "", errors.New("db") }}}
		}, req{}, Internal, 0, 0, false, "", "key function failed; answering 500", "ERROR"},
		{"empty key is internal", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t), Key: func(req) (string, error) { return "", nil }}}
		}, req{}, Internal, 0, 0, false, "", "empty key", "ERROR"},
		{"key panic is internal", func(t *testing.T) []Policy[req] {
			return []Policy[req]{{Name: "a", Budget: open(t), Key: func(req) (string, error) { panic("nil map") }}}
		}, req{}, Internal, 0, 0, false, "", "key function panicked: nil map", "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logtest.Buffer
			ps := tc.policies(t)
			counters := make([]*counting, len(ps))
			for i := range ps {
				counters[i] = &counting{Budget: ps[i].Budget}
				if lb, ok := ps[i].Budget.(interface{ Limit() limiter.Limit }); ok {
					ps[i].Budget = countingLimit{counters[i], lb.Limit}
				} else {
					ps[i].Budget = counters[i]
				}
			}
			l := newLimiter(t, &logs, ps...)
			states := make([]State, len(ps))
			o := l.Decide(context.Background(), tc.r, states)
			assert.Equal(t, tc.verdict, o.Verdict, "%v", o.Err)
			assert.Equal(t, tc.policy, o.Policy)
			assert.Equal(t, tc.ra, o.RetryAfter.Round(time.Millisecond))
			assert.Equal(t, tc.exact, o.Exact)
			for i, c := range counters {
				name := ps[i].Name
				if strings.Contains(tc.asked, name) {
					assert.Equal(t, 1, c.n, "policy %s's budget is asked", name)
				} else {
					assert.Zero(t, c.n, "policy %s's budget is not asked", name)
				}
			}
			assert.Contains(t, logs.String(), tc.log)
			if tc.level != "" {
				assert.Equal(t, tc.level, levelOf(logs.String(), tc.log), "the record's level")
			}
		})
	}
}

// levelOf returns the level of the first record in logs that contains
// text, or "".
func levelOf(logs, text string) string {
	for line := range strings.Lines(logs) {
		if strings.Contains(line, text) {
			if _, rest, ok := strings.Cut(line, "level="); ok {
				lvl, _, _ := strings.Cut(rest, " ")
				return lvl
			}
		}
	}
	return ""
}

// TestRateLimitStates: the states report every policy that answered, the
// shadow ones too, so that a transport can list them all.
func TestRateLimitStates(t *testing.T) {
	a, b := local(t, limiter.PerSecond(1, 5)), local(t, limiter.PerSecond(1, 1))
	l := newLimiter(t, new(logtest.Buffer), Policy[req]{Name: "a", Budget: a}, Policy[req]{Name: "b", Budget: b, Shadow: true})
	states := make([]State, 2)
	o := l.Decide(context.Background(), req{"key": "k"}, states)
	require.Equal(t, Pass, o.Verdict)
	require.True(t, states[0].OK)
	require.True(t, states[1].OK)
	assert.Equal(t, 4, states[0].Decision.Remaining)
	assert.Equal(t, 0, states[1].Decision.Remaining)
	o = l.Decide(context.Background(), req{"key": "k"}, states)
	assert.Equal(t, Pass, o.Verdict, "the shadow policy refuses, and is only reported")
	assert.False(t, states[1].Decision.Allowed)
	assert.Equal(t, 3, states[0].Decision.Remaining)

	// No room given: Decide keeps its own (on the stack up to four).
	assert.Equal(t, Pass, l.Decide(context.Background(), req{"key": "k"}, nil).Verdict)
}

func TestRateLimitSkip(t *testing.T) {
	b := &counting{Budget: local(t, limiter.PerSecond(1, 1))}
	var logs logtest.Buffer
	l, err := NewRateLimiter(RateLimitConfig[req]{
		Common: Common[req]{Skip: func(r req) bool {
			if r["skip"] == "panic" {
				panic("skip table")
			}
			return r["skip"] == "yes"
		}, Logger: logtest.NewLogger(&logs), Names: testNames},
		Policies: []Policy[req]{{Budget: b}}, DefaultKey: keyOf,
	})
	require.NoError(t, err)
	assert.Equal(t, Pass, l.Decide(context.Background(), req{"skip": "yes"}, nil).Verdict)
	assert.Zero(t, b.n, "a skipped request asks nothing")
	assert.Equal(t, Internal, l.Decide(context.Background(), req{"skip": "panic"}, nil).Verdict)
	assert.Contains(t, logs.String(), "skip function panicked")
	assert.Equal(t, Pass, l.Decide(context.Background(), req{"key": "k"}, nil).Verdict)
	assert.Equal(t, 1, b.n)
}

func TestRateLimitGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := newLimiter(t, new(logtest.Buffer), Policy[req]{Budget: failing{err: context.Canceled}})
	o := l.Decide(ctx, req{"key": "k"}, nil)
	assert.Equal(t, Gone, o.Verdict)
	assert.ErrorIs(t, o.Err, context.Canceled)
}

func TestRateLimitConfig(t *testing.T) {
	b := local(t, limiter.PerSecond(1, 1))
	for _, tc := range []struct {
		cfg  RateLimitConfig[req]
		want string
	}{
		{RateLimitConfig[req]{DefaultKey: keyOf}, "no Policy given"},
		{RateLimitConfig[req]{Policies: []Policy[req]{{}}, DefaultKey: keyOf}, "Policy[0].Budget is nil"},
		{RateLimitConfig[req]{Policies: []Policy[req]{{Budget: b}}}, "Policy[0].Key is nil and there is no default"},
		{RateLimitConfig[req]{Policies: []Policy[req]{{Budget: b}, {Name: "default", Budget: b}}, DefaultKey: keyOf}, "Policy[1].Name"},
		{RateLimitConfig[req]{Policies: []Policy[req]{{Name: strings.Repeat("n", 65), Budget: b}}, DefaultKey: keyOf}, "Policy[0].Name: must be 1 to 64 bytes"},
		{RateLimitConfig[req]{Policies: []Policy[req]{{Budget: b}}, DefaultKey: keyOf, UnavailableRetryAfter: -1, Path: "RateLimitConfig"},
			"RateLimitConfig.UnavailableRetryAfter must be >= 0 (0 means 1s), got -1ns"},
	} {
		_, err := NewRateLimiter(tc.cfg)
		assert.ErrorContains(t, err, tc.want)
	}
}

// TestKeyFailures: a key function's error is the caller leaving (Gone,
// Debug) once the request's context has ended and the error says so, the
// client's fault (BadRequest, Debug) when it wraps NoKey or ClientFault
// says so, and otherwise the server's (Internal, Error); the log names the
// answer the transport gives (Answer). A shadow policy's is logged alike
// and never decides. The Admitter classifies its Key's errors the same way.
func TestKeyFailures(t *testing.T) {
	errGone := errors.New("transport: canceled") // a transport's rendition of a context's end
	errDenied := errors.New("transport: permission denied")
	errDown := errors.New("transport: unavailable")
	keys := Keys{
		NoKey:       errNoKey,
		ClientFault: func(err error) bool { return errors.Is(err, errDenied) },
		Gone:        func(err error) bool { return errors.Is(err, errGone) },
		Answer: func(err error) string {
			switch {
			case errors.Is(err, errDenied):
				return "PermissionDenied"
			case errors.Is(err, errDown):
				return "Unavailable"
			}
			return ""
		},
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     func(ctx context.Context) error
		verdict Verdict
		log     string
		level   string
	}{
		{"context's own error, context ended", canceled, func(ctx context.Context) error { return fmt.Errorf("tenant lookup: %w", ctx.Err()) },
			Gone, "request canceled while finding its rate-limit key", "DEBUG"},
		{"transport's context error, context ended", canceled, func(context.Context) error { return errGone },
			Gone, "request canceled while finding its rate-limit key", "DEBUG"},
		{"transport's context error, context alive: the server's own timeout", context.Background(), func(context.Context) error { return errGone },
			Internal, "key function failed; answering 500", "ERROR"},
		{"a plain context error, context alive", context.Background(), func(context.Context) error { return context.DeadlineExceeded },
			Internal, "key function failed; answering 500", "ERROR"},
		{"client fault", context.Background(), func(context.Context) error { return errDenied },
			BadRequest, "no usable rate-limit key; answering PermissionDenied", "DEBUG"},
		{"no key", context.Background(), func(context.Context) error { return errNoKey },
			BadRequest, "no usable rate-limit key; answering 400", "DEBUG"},
		{"server fault with an answer of its own", context.Background(), func(context.Context) error { return errDown },
			Internal, "key function failed; answering Unavailable", "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, shadow := range []bool{false, true} {
				var logs logtest.Buffer
				b := &counting{Budget: local(t, limiter.PerSecond(1, 1))}
				ps := []Policy[req]{{Name: "k", Budget: b, Shadow: shadow,
					Key: func(r req) (string, error) { return "", tc.err(tc.ctx) }}}
				if shadow {
					ps = append(ps, Policy[req]{Name: "ip", Budget: local(t, limiter.PerSecond(1, 1))})
				}
				l, err := NewRateLimiter(RateLimitConfig[req]{
					Common: Common[req]{Keys: keys, Logger: logtest.NewLogger(&logs), Names: testNames}, Policies: ps, DefaultKey: keyOf,
				})
				require.NoError(t, err)
				o := l.Decide(tc.ctx, req{"key": "k"}, nil)
				assert.Zero(t, b.n, "the policy without a key is not asked")
				if shadow {
					if tc.verdict == Internal {
						assert.Equal(t, "ERROR", levelOf(logs.String(), "shadow policy's key function failed"))
					} else {
						assert.NotContains(t, logs.String(), "level=ERROR")
					}
					if tc.ctx.Err() == nil {
						assert.Equal(t, Pass, o.Verdict, "a shadow policy never decides")
					}
					continue
				}
				assert.Equal(t, tc.verdict, o.Verdict)
				assert.True(t, o.KeyErr)
				assert.Equal(t, tc.level, levelOf(logs.String(), tc.log), "%s", logs.String())
				if tc.verdict == Gone {
					assert.Equal(t, DefaultUnavailableRetryAfter, o.RetryAfter)
				}
			}

			// The Admitter's Key.
			var logs logtest.Buffer
			a, err := NewAdmitter(AdmitConfig[req]{
				Common: Common[req]{Keys: keys, Logger: logtest.NewLogger(&logs), Names: testNames},
				Gate:   newGate(t), Key: func(req) (string, error) { return "", tc.err(tc.ctx) },
			})
			require.NoError(t, err)
			o := a.Decide(tc.ctx, req{}, nil)
			assert.Equal(t, tc.verdict, o.Verdict)
			assert.Equal(t, tc.level, levelOf(logs.String(), strings.ReplaceAll(tc.log, "rate-limit key", "client ID")), "%s", logs.String())
		})
	}
}

// TestLogsAreThrottled: a failing budget under load costs the log about
// one record a second, each saying how many it stands for.
func TestLogsAreThrottled(t *testing.T) {
	var logs logtest.Buffer
	l := newLimiter(t, &logs, Policy[req]{Budget: failing{err: limiter.ErrUnavailable}})
	for range 100 {
		require.Equal(t, Unavailable, l.Decide(context.Background(), req{"key": "k"}, nil).Verdict)
	}
	n := strings.Count(logs.String(), "rate limiter failed")
	assert.GreaterOrEqual(t, n, 1)
	assert.Less(t, n, 10, "100 failures in well under 10 s")
	assert.Contains(t, logs.String(), "suppressed=0")
}

func TestPrefixes(t *testing.T) {
	def, err := CheckPrefixes(0, 0)
	require.NoError(t, err)
	assert.Equal(t, Prefixes{32, 64}, def)
	assert.False(t, def.Full())
	wide, err := CheckPrefixes(24, 48)
	require.NoError(t, err)
	full, err := CheckPrefixes(32, 128)
	require.NoError(t, err)
	assert.True(t, full.Full())
	for _, tc := range []struct {
		p    Prefixes
		text string
		want string
	}{
		{def, "203.0.113.7", "203.0.113.7"},
		{def, "2001:db8:cafe:17::1", "2001:db8:cafe:17::/64"},
		{def, "2001:db8:cafe:17:ffff:ffff:ffff:ffff", "2001:db8:cafe:17::/64"},
		{def, "::ffff:203.0.113.7", "203.0.113.7"},
		{def, "fe80::1%eth0", "fe80::/64"},
		{wide, "203.0.113.7", "203.0.113.0/24"},
		{wide, "2001:db8:cafe:17::1", "2001:db8:cafe::/48"},
		{full, "2001:DB8::7", "2001:db8::7"},
		{full, "fe80::1%eth0", "fe80::1"},
	} {
		a := netip.MustParseAddr(tc.text)
		assert.Equal(t, tc.want, tc.p.Key(tc.text, a), "%v %s", tc.p, tc.text)
	}
	for _, bad := range [][2]int{{33, 0}, {-1, 0}, {0, 129}, {0, -5}} {
		_, err := CheckPrefixes(bad[0], bad[1])
		assert.Error(t, err, "%v", bad)
	}
	// The common case allocates nothing: an IPv4 address already canonical.
	a := netip.MustParseAddr("203.0.113.7")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = def.Key("203.0.113.7", a) }))
}
