package prometheus_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	herdprom "github.com/herdcap/herdcap/contrib/prometheus"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
	"github.com/herdcap/herdcap/warmup"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// The Redis tests use internal/redistest: Go's internal rule goes by
// import path, and this module's path lies under herdcap's, so it may.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(redistest.LeakOptions()...); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func newHooks(t *testing.T) (*prom.Registry, *observe.Hooks) {
	t.Helper()
	reg := prom.NewRegistry()
	h, err := herdprom.New(reg)
	require.NoError(t, err)
	return reg, h
}

func TestNewRefusesASecondRegistration(t *testing.T) {
	reg, _ := newHooks(t)
	_, err := herdprom.New(reg)
	require.Error(t, err)
}

// TestLocalBudget: a Local budget's decisions, by policy, outcome and
// source; no key appears in any label.
func TestLocalBudget(t *testing.T) {
	reg, h := newHooks(t)
	b, err := limiter.NewLocal(limiter.PerMinute(1, 3), limiter.Config{Name: "login", Observe: h})
	require.NoError(t, err)
	ctx := context.Background()
	for range 5 {
		_, err := b.AllowN(ctx, "user:secret-key", 1)
		require.NoError(t, err)
	}
	dec := func(o string) float64 {
		return testutil.ToFloat64(metricVec(t, reg, herdprom.Decisions, map[string]string{"policy": "login", "outcome": o, "source": "local"}))
	}
	assert.Equal(t, 3.0, dec("allowed"))
	assert.Equal(t, 2.0, dec("denied"))
	assertNoKey(t, reg, "secret-key")
}

// TestRedisBudgets: Strict and Leased budgets on a private redis-server,
// through a kill and a restart: decisions by source, the breaker's state,
// the fallback gauge, lease exchanges.
func TestRedisBudgets(t *testing.T) {
	s := redistest.Start(t)
	reg, h := newHooks(t)
	r := fleet.Redis{Client: s.Client(t), Timeout: 2 * time.Second, BreakerFailures: 1, BreakerOpen: 50 * time.Millisecond}
	r.Name = "strict"
	strict, err := fleet.NewStrict(r, limiter.PerSecond(1000, 1000), fleet.Config{Config: limiter.Config{Name: "api", Observe: h}, Failure: fleet.FailOpen})
	require.NoError(t, err)
	defer strict.Close()
	r.Name = "leased"
	leased, err := fleet.NewLeased(r, limiter.PerSecond(1000, 1000), fleet.LeasedConfig{Config: fleet.Config{Config: limiter.Config{Name: "feed", Observe: h}, Failure: fleet.FailOpen}})
	require.NoError(t, err)
	defer leased.Close()
	ctx := context.Background()
	for range 10 {
		_, err := strict.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		_, err = leased.AllowN(ctx, "k", 1)
		require.NoError(t, err)
	}
	assert.Equal(t, 10.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Decisions, map[string]string{"policy": "api", "outcome": "allowed", "source": "redis"})))
	assert.Positive(t, testutil.ToFloat64(metricVec(t, reg, herdprom.LeaseExchanges, map[string]string{"policy": "feed"})))
	assert.Positive(t, testutil.ToFloat64(metricVec(t, reg, herdprom.LeaseTokens, map[string]string{"policy": "feed"})))

	s.Kill(t)
	for _, b := range []limiter.Budget{strict, leased} {
		d, err := b.Take(ctx, limiter.Request{Key: "new", N: 1})
		require.NoError(t, err)
		require.Equal(t, limiter.ViaFallback, d.Via)
	}
	for _, p := range []string{"api", "feed"} {
		assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Fallback, map[string]string{"policy": p})), p)
		assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.BreakerState, map[string]string{"policy": p, "state": "open"})), p)
		assert.Equal(t, 0.0, testutil.ToFloat64(metricVec(t, reg, herdprom.BreakerState, map[string]string{"policy": p, "state": "closed"})), p)
	}
	s.Restart(t)
	// Generous: the breaker lets a probe through after 50 ms, and a
	// restarted redis-server under -race on 2 loaded cores may take a
	// while to accept connections.
	require.Eventually(t, func() bool {
		d1, err1 := strict.AllowN(ctx, "k", 1)
		d2, err2 := leased.AllowN(ctx, "other", 1)
		return err1 == nil && err2 == nil && d1.Via == limiter.ViaRedis && d2.Via == limiter.ViaRedis
	}, 10*time.Second, 20*time.Millisecond)
	for _, p := range []string{"api", "feed"} {
		assert.Equal(t, 0.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Fallback, map[string]string{"policy": p})), p)
		assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.FallbackEntered, map[string]string{"policy": p})), p)
		assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.BreakerState, map[string]string{"policy": p, "state": "closed"})), p)
	}
	assertNoKey(t, reg, "other")
}

// TestAdmissionRolloutWarmup: an admission gate, a rollout paused and
// resumed, a warm-up run to the end, on the in-process stores.
func TestAdmissionRolloutWarmup(t *testing.T) {
	reg, h := newHooks(t)
	ctx := context.Background()

	g, err := admission.New(limiter.PerSecond(10, 1), admission.Config{Config: limiter.Config{Name: "sessions", Observe: h}})
	require.NoError(t, err)
	defer g.Close()
	for _, id := range []string{"a", "b", "c"} {
		_, err := g.Admit(ctx, id, "")
		require.NoError(t, err)
	}
	assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Admissions, map[string]string{"policy": "sessions", "outcome": "granted"})))
	assert.Equal(t, 2.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Admissions, map[string]string{"policy": "sessions", "outcome": "refused"})))

	co, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Observe: h, PopulationWindow: -1})
	require.NoError(t, err)
	_, err = co.Start(ctx, invalidate.Rollout{ID: "deploy-7", Scope: "tag:x", Cohorts: 10, Rate: 100, Clients: 1000, Coverage: 0.1, By: "ci"})
	require.NoError(t, err)
	require.NoError(t, co.Pause(ctx, "deploy-7", invalidate.By{Who: "ops", Reason: "orders dipped"}))
	rollouts := func(phase string) float64 {
		return testutil.ToFloat64(metricVec(t, reg, herdprom.Rollouts, map[string]string{"phase": phase}))
	}
	assert.Equal(t, 1.0, rollouts("paused"))
	assert.Equal(t, 0.0, rollouts("running"))
	require.NoError(t, co.Resume(ctx, "deploy-7", invalidate.By{Who: "ops"}))
	assert.Equal(t, 0.0, rollouts("paused"))
	assert.Equal(t, 1.0, rollouts("running"))
	require.NoError(t, co.Abort(ctx, "deploy-7", invalidate.By{Who: "ops", Reason: "test"}))
	assert.Equal(t, 0.0, rollouts("running"))
	assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.RolloutEvents, map[string]string{"event": "paused"})))

	b, err := limiter.NewLocal(limiter.PerSecond(1e6, 100), limiter.Config{})
	require.NoError(t, err)
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: b, ChunkSize: 2, Workers: 1, Interval: 10 * time.Millisecond, Observe: h})
	require.NoError(t, err)
	items := []warmup.Item{{Key: "a", Weight: 3}, {Key: "b", Weight: 2}, {Key: "c", Weight: 1}}
	require.NoError(t, w.Start(ctx, warmup.Warm{ID: "catalog", Source: warmup.Slice(items),
		Fetch: func(context.Context, string) (any, time.Time, error) { return 1, time.Time{}, nil },
		Store: func(context.Context, string, any, time.Time) error { return nil }}))
	assert.Equal(t, 1.0, testutil.ToFloat64(metricVec(t, reg, herdprom.Warmups, map[string]string{"phase": "running"})))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(runCtx) }()
	// Three no-op keys: 10 s is generous on a loaded machine.
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(metricVec(t, reg, herdprom.Warmups, map[string]string{"phase": "running"})) == 0
	}, 10*time.Second, 5*time.Millisecond)
	stop()
	<-done
	assert.Equal(t, 3.0, testutil.ToFloat64(metricVec(t, reg, herdprom.WarmupKeys, map[string]string{"outcome": "warmed"})))
}

// TestAlertRulesNameExistingMetrics parses alerts.yaml and checks that
// every herdcap_ metric its expressions name is one the adapter
// registers, and that each rule the issue asks for is there.
func TestAlertRulesNameExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("alerts.yaml")
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert string
				Expr  string
				For   string
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Groups)

	reg, h := newHooks(t)
	feedAll(h)
	families, err := reg.Gather()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	metric := regexp.MustCompile(`herdcap_[a-z0-9_]+`)
	alerts := map[string]bool{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			names := metric.FindAllString(r.Expr, -1)
			require.NotEmpty(t, names, "rule %s names no herdcap metric", r.Alert)
			for _, n := range names {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if !known[base] && strings.HasSuffix(base, suf) {
						base = strings.TrimSuffix(base, suf)
					}
				}
				assert.True(t, known[base], "rule %s names %s, which the adapter does not export", r.Alert, n)
			}
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				assert.NoError(t, err, r.Alert)
			}
		}
	}
	for _, a := range []string{"HerdcapRolloutPaused", "HerdcapBudgetOnFallback", "HerdcapBreakerOpen"} {
		assert.True(t, alerts[a], a)
	}
}

// TestMetricNamesFollowConventions: every family has the herdcap_ prefix,
// counters end in _total, and no label is named after a key.
func TestMetricNamesFollowConventions(t *testing.T) {
	reg, h := newHooks(t)
	feedAll(h)
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, families, 20)
	for _, f := range families {
		n := f.GetName()
		assert.True(t, strings.HasPrefix(n, "herdcap_"), n)
		if f.GetType().String() == "COUNTER" {
			assert.True(t, strings.HasSuffix(n, "_total"), n)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				assert.Contains(t, []string{"policy", "outcome", "source", "state", "to", "phase", "event", "origin"}, l.GetName(), n)
			}
		}
	}
}

// feedAll sends one event of every kind through h, so that every metric
// has a child.
func feedAll(h *observe.Hooks) {
	h.Decision(observe.Decision{Policy: "p", Outcome: observe.Allowed, Source: observe.SourceLocal, Tokens: 1})
	h.Breaker(observe.Breaker{Policy: "p", From: observe.BreakerClosed, To: observe.BreakerOpen})
	h.Fallback(observe.Fallback{Policy: "p", Entered: true})
	h.Lease(observe.Lease{Policy: "p", Tokens: 5, Latency: time.Millisecond})
	h.Admission(observe.Admission{Policy: "p", Wait: time.Second})
	h.Rollout(observe.Rollout{Kind: observe.RolloutStarted, ID: "r", Cohorts: 10})
	h.Rollout(observe.Rollout{Kind: observe.RolloutCohortReleased, ID: "r", Released: 1, Cohorts: 10})
	h.Warmup(observe.Warmup{Kind: observe.WarmupChunkDone, ID: "w", Keys: 2, Phase: "running"})
	h.Headroom(observe.Headroom{Origin: "db", Limit: 100, Spare: 20})
}

// metricVec returns the collector of name's child with labels, found in
// reg by gathering (so that tests go through the registry, as a scrape
// does).
func metricVec(t *testing.T, reg *prom.Registry, name string, labels map[string]string) prom.Collector {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			v := 0.0
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			}
			return constant(v)
		}
	}
	return constant(0)
}

// constant is a collector of one value, for testutil.ToFloat64.
func constant(v float64) prom.Collector {
	return prom.NewGaugeFunc(prom.GaugeOpts{Name: "v", Help: "v"}, func() float64 { return v })
}

// assertNoKey checks that no label value of reg holds key.
func assertNoKey(t *testing.T, reg *prom.Registry, key string) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				assert.NotContains(t, l.GetValue(), key, f.GetName())
			}
		}
	}
}

// TestSlowStart: a slow-start gate's decisions count by reason and its
// share is a gauge, from a real gate.
func TestSlowStart(t *testing.T) {
	reg, h := newHooks(t)
	g, err := slowstart.New(slowstart.Config{Name: "api", Observe: h})
	require.NoError(t, err)
	counts := map[string]float64{}
	for i := range 100 {
		d, err := g.Admit(context.Background(), fmt.Sprint("client-", i))
		require.NoError(t, err)
		counts[d.Reason.String()]++
	}
	require.Positive(t, counts["share"])
	require.Positive(t, counts["ramp"])
	for reason, n := range counts {
		assert.Equal(t, n, testutil.ToFloat64(metricVec(t, reg, herdprom.SlowStarts, map[string]string{"policy": "api", "reason": reason})), reason)
	}
	assert.InDelta(t, g.Share(), testutil.ToFloat64(metricVec(t, reg, herdprom.SlowStartShare, map[string]string{"policy": "api"})), 0.01)
}
