package slowstart

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newGate(t *testing.T, cfg Config) (*Gate, *fakeclock.Clock) {
	t.Helper()
	c := fakeclock.New(t0)
	cfg.Clock = c
	g, err := New(cfg)
	require.NoError(t, err)
	return g, c
}

func TestShareTimer(t *testing.T) {
	for _, tc := range []struct {
		aggr float64
		at   time.Duration
		want float64
	}{
		{1, 0, 0.1},
		{1, 5 * time.Second, 0.1},
		{1, 30 * time.Second, 0.5},
		{1, 45 * time.Second, 0.75},
		{1, 59 * time.Second, 59.0 / 60},
		{1, time.Minute, 1},
		{2, 15 * time.Second, 0.5}, // (1/4)^(1/2)
		{2, 36 * time.Second, math.Sqrt(0.6)},
		{0.5, 30 * time.Second, 0.25}, // (1/2)^2
	} {
		g, c := newGate(t, Config{Aggression: tc.aggr})
		c.Add(tc.at)
		assert.InDelta(t, tc.want, g.Share(), 1e-9, "aggression %v at %v", tc.aggr, tc.at)
	}
	g, c := newGate(t, Config{})
	c.Add(2 * time.Minute)
	assert.Equal(t, 1.0, g.Share())
	d, err := g.Admit(context.Background(), "anyone")
	require.NoError(t, err)
	assert.Equal(t, Decision{Admitted: true, Reason: Warm, Share: 1}, d)
}

func TestShareWarmth(t *testing.T) {
	var w atomic.Uint64 // float64 bits
	set := func(v float64) { w.Store(math.Float64bits(v)) }
	cfg := Config{Warmth: func() float64 { return math.Float64frombits(w.Load()) }, Target: 0.8}

	// warmed early: full traffic long before Window
	g, c := newGate(t, cfg)
	assert.InDelta(t, 0.1, g.Share(), 1e-9)
	set(0.4)
	c.Add(time.Second)
	assert.InDelta(t, 0.5, g.Share(), 1e-9, "warmth / Target")
	set(0.8)
	c.Add(time.Second)
	assert.Equal(t, 1.0, g.Share(), "warm at Target, 2 s into a 1 min window")
	set(0) // a warm gate stays warm
	assert.Equal(t, 1.0, g.Share())

	// stays cold: still shedding past Window, full at MaxWindow (4 min)
	set(0)
	g, c = newGate(t, cfg)
	c.Add(time.Minute)
	assert.InDelta(t, 0.25, g.Share(), 1e-9, "the timer runs over MaxWindow")
	c.Add(2 * time.Minute)
	assert.InDelta(t, 0.75, g.Share(), 1e-9)
	c.Add(time.Minute)
	assert.Equal(t, 1.0, g.Share(), "never shed forever")

	// the share never falls during a ramp
	set(0.6)
	g, c = newGate(t, cfg)
	assert.InDelta(t, 0.75, g.Share(), 1e-9)
	set(0.1)
	c.Add(time.Second)
	assert.InDelta(t, 0.75, g.Share(), 1e-9)

	// explicit MaxWindow; NaN and panics read as cold
	set(math.NaN())
	g, c = newGate(t, Config{Warmth: cfg.Warmth, MaxWindow: 2 * time.Minute})
	c.Add(time.Minute)
	assert.InDelta(t, 0.5, g.Share(), 1e-9)
	g, _ = newGate(t, Config{Warmth: func() float64 { panic("boom") }})
	assert.InDelta(t, 0.1, g.Share(), 1e-9)
	assert.Equal(t, uint64(2), g.Stats().WarmthFailures, "Share and Stats each read Warmth")
}

func TestReset(t *testing.T) {
	g, c := newGate(t, Config{})
	c.Add(2 * time.Minute)
	_, _ = g.Admit(context.Background(), "a")
	require.Equal(t, 1.0, g.Share())
	g.Reset()
	assert.InDelta(t, 0.1, g.Share(), 1e-9, "a new ramp")
	c.Add(30 * time.Second)
	assert.InDelta(t, 0.5, g.Share(), 1e-9)
	st := g.Stats()
	assert.Equal(t, uint64(1), st.Resets)
	assert.Equal(t, uint64(1), st.Admitted)
	assert.Equal(t, t0.Add(2*time.Minute), st.Started.UTC())
}

// TestSticky: a client admitted at share s stays admitted as the share
// grows, and the admitted fraction of many clients follows the share.
func TestSticky(t *testing.T) {
	ctx := context.Background()
	g, c := newGate(t, Config{})
	const clients = 10000
	admitted := make([]bool, clients)
	for step := 0; step <= 60; step++ {
		n := 0
		s := g.Share()
		for i := range clients {
			d, err := g.Admit(ctx, fmt.Sprintf("client-%d", i))
			require.NoError(t, err)
			if admitted[i] {
				require.True(t, d.Admitted, "client %d admitted before, shed at share %v", i, s)
			}
			admitted[i] = d.Admitted
			if d.Admitted {
				n++
			} else {
				require.Equal(t, Share, d.Reason)
			}
		}
		// binomial: ±4 σ at 10,000 clients is at most ±0.02
		assert.InDelta(t, s, float64(n)/clients, 0.02, "step %d", step)
		c.Add(time.Second)
	}
}

// TestKeyless: the golden-ratio sequence admits the share of any run of
// key-less requests.
func TestKeyless(t *testing.T) {
	g, c := newGate(t, Config{})
	c.Add(18 * time.Second) // share 0.3
	for _, run := range []int{10, 100, 1000} {
		n := 0
		for range run {
			if d, _ := g.Admit(context.Background(), ""); d.Admitted {
				n++
			}
		}
		// a low-discrepancy sequence misses by at most a few requests
		assert.InDelta(t, 0.3*float64(run), float64(n), 3, "run of %d", run)
	}
}

// TestRetryAfter: a shed client told to come back at its wait is
// admitted then, at the timer's pace; waits are bounded and spread.
func TestRetryAfter(t *testing.T) {
	ctx := context.Background()
	g, c := newGate(t, Config{})
	c.Add(10 * time.Second)
	seen := map[time.Duration]bool{}
	late := 0
	for i := range 200 {
		key := fmt.Sprintf("c%d", i)
		d, _ := g.Admit(ctx, key)
		if d.Admitted {
			continue
		}
		assert.GreaterOrEqual(t, d.RetryAfter, DefaultMinRetryAfter)
		assert.LessOrEqual(t, d.RetryAfter, DefaultMaxRetryAfter)
		seen[d.RetryAfter] = true
		if d.RetryAfter < DefaultMaxRetryAfter*3/4 { // not capped: it is due then
			g2, c2 := newGate(t, Config{})
			c2.Add(10*time.Second + d.RetryAfter)
			d2, _ := g2.Admit(ctx, key)
			if !d2.Admitted {
				late++
			}
		}
	}
	assert.Zero(t, late, "clients told a wait below the cap are admitted at it")
	assert.Greater(t, len(seen), 100, "waits are spread")

	// the budget's wait
	b, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: c})
	require.NoError(t, err)
	g, err = New(Config{Budget: b, MinShare: 1.0 / 2, Clock: c})
	require.NoError(t, err)
	var shed Decision
	for i := 0; shed.Reason != Budget; i++ {
		shed, _ = g.Admit(ctx, "")
	}
	assert.GreaterOrEqual(t, shed.RetryAfter, DefaultMinRetryAfter)
}

// TestFleetBudget: three cold gates sharing one fleet budget on a real
// Redis admit at most the budget's tokens of cold traffic together,
// whatever their timers say.
func TestFleetBudget(t *testing.T) {
	srv := redistest.Start(t)
	c := fakeclock.New(t0)
	b, err := fleet.NewStrict(fleet.Redis{Client: srv.Client(t), Timeout: time.Second},
		limiter.PerSecond(50, 50), fleet.Config{Config: limiter.Config{Clock: c}, Failure: fleet.FailClosed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	var gates []*Gate
	for i := range 3 {
		g, err := New(Config{Budget: b, Clock: c, Salt: fmt.Sprintf("node-%d", i), MinShare: 0.5})
		require.NoError(t, err)
		gates = append(gates, g)
	}
	ctx := context.Background()
	admitted := 0
	const seconds = 10
	for s := range seconds {
		for i := range 200 { // 200 requests a second on each node, 10 ms apart
			for _, g := range gates {
				d, err := g.Admit(ctx, fmt.Sprintf("%d-%d", s, i))
				require.NoError(t, err)
				if d.Admitted {
					admitted++
				}
			}
			c.Add(5 * time.Millisecond)
		}
	}
	// the burst plus 50 a second; without the budget the shares (0.5 to
	// 2/3) would admit about 3 × 200 × 0.58 × 10 = 3,500
	assert.LessOrEqual(t, admitted, 50+50*seconds)
	assert.GreaterOrEqual(t, admitted, 50*seconds*9/10, "the budget is used, not starved")
	var budgetShed uint64
	for _, g := range gates {
		budgetShed += g.Stats().ShedBudget
	}
	assert.Positive(t, budgetShed)

	// warm gates no longer take tokens
	c.Add(time.Minute)
	for _, g := range gates {
		d, err := g.Admit(ctx, "x")
		require.NoError(t, err)
		assert.Equal(t, Warm, d.Reason)
	}
}

type failing struct{}

func (failing) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, limiter.ErrUnavailable
}

func TestBudgetError(t *testing.T) {
	g, _ := newGate(t, Config{Budget: failing{}, MinShare: 1.0 / 2})
	var d Decision
	var err error
	for d.Reason != Budget {
		d, err = g.Admit(context.Background(), "")
	}
	require.ErrorIs(t, err, limiter.ErrUnavailable)
	assert.Equal(t, DefaultMaxRetryAfter, d.RetryAfter)
	assert.Equal(t, uint64(1), g.Stats().BudgetErrors)
}

func TestBadConfig(t *testing.T) {
	warm := func() float64 { return 0 }
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{Window: -1}, "Config.Window"},
		{Config{Aggression: -1}, "Config.Aggression"},
		{Config{Aggression: math.NaN()}, "Config.Aggression"},
		{Config{Aggression: math.Inf(1)}, "Config.Aggression"},
		{Config{MinShare: -0.1}, "Config.MinShare"},
		{Config{MinShare: 1.5}, "Config.MinShare"},
		{Config{MinShare: math.NaN()}, "Config.MinShare"},
		{Config{Warmth: warm, Target: 2}, "Config.Target"},
		{Config{Warmth: warm, Target: math.NaN()}, "Config.Target"},
		{Config{Target: 0.5}, "Config.Target"},
		{Config{MaxWindow: time.Hour}, "Config.MaxWindow"},
		{Config{Warmth: warm, Window: time.Hour, MaxWindow: time.Minute}, "Config.MaxWindow"},
		{Config{BudgetKey: "k"}, "Config.BudgetKey"},
		{Config{MinRetryAfter: -1}, "Config.MinRetryAfter"},
		{Config{MaxRetryAfter: -1}, "Config.MaxRetryAfter"},
		{Config{MinRetryAfter: time.Minute}, "Config.MinRetryAfter"},
	} {
		_, err := New(tc.cfg)
		require.Error(t, err, tc.field)
		assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
		assert.Contains(t, err.Error(), "slowstart."+tc.field)
	}
}

func TestAllocs(t *testing.T) {
	w := func() float64 { return 0.2 }
	g, c := newGate(t, Config{Warmth: w})
	c.Add(10 * time.Second)
	ctx := context.Background()
	for _, key := range []string{"client-1", "client-2", ""} {
		n := testing.AllocsPerRun(1000, func() { _, _ = g.Admit(ctx, key) })
		assert.Zero(t, n, "key %q", key)
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = g.Share() }))
}

func TestReasonString(t *testing.T) {
	assert.Equal(t, "warm ramp share budget Reason(9)",
		fmt.Sprint(Warm, Ramp, Share, Budget, Reason(9)))
}

// TestRetryAfterFollowsWarmth: a node whose warmth outpaces its timer
// tells shed clients the sooner time its warmth's pace gives.
func TestRetryAfterFollowsWarmth(t *testing.T) {
	var w atomic.Uint64
	g, c := newGate(t, Config{Warmth: func() float64 { return math.Float64frombits(w.Load()) }, MaxRetryAfter: time.Minute})
	c.Add(10 * time.Second)
	w.Store(math.Float64bits(0.3)) // from MinShare 0.1 to 0.3 in 10 s: 0.02 a second
	checked := 0
	for i := range 100 {
		key := fmt.Sprint("c", i)
		x := g.place(key)
		d, err := g.Admit(context.Background(), key)
		require.NoError(t, err)
		if d.Admitted {
			continue
		}
		// due in (x − 0.3) ÷ 0.02 s at the share's pace; the timer over
		// the 4 min MaxWindow would say 240x − 10 s; the spread adds up
		// to a quarter
		due := time.Duration(min((x-0.3)/0.02, 240*x-10) * float64(time.Second))
		if due < DefaultMinRetryAfter || due*5/4 > time.Minute {
			continue
		}
		checked++
		assert.GreaterOrEqual(t, d.RetryAfter, due-time.Millisecond, "place %v", x)
		assert.LessOrEqual(t, d.RetryAfter, due*5/4+time.Millisecond, "place %v", x)
	}
	assert.Greater(t, checked, 30)
}

// TestObserve: every decision reaches Config.Observe as it was returned,
// named after Config.Name, and the hook may call back into the gate (it
// is called with no lock held).
func TestObserve(t *testing.T) {
	var got []observe.SlowStart
	var g *Gate
	g, c := newGate(t, Config{Name: "api", Observe: &observe.Hooks{SlowStart: func(e observe.SlowStart) {
		_ = g.Share() // a hook may call the gate
		got = append(got, e)
	}}})
	var want []observe.SlowStart
	for i := range 200 {
		d, err := g.Admit(context.Background(), fmt.Sprint("client-", i))
		require.NoError(t, err)
		want = append(want, observe.SlowStart{Policy: "api", Admitted: d.Admitted, Reason: d.Reason.String(), Share: d.Share, RetryAfter: d.RetryAfter})
	}
	c.Add(2 * time.Minute)
	_, err := g.Admit(context.Background(), "later")
	require.NoError(t, err)
	want = append(want, observe.SlowStart{Policy: "api", Admitted: true, Reason: "warm", Share: 1})
	assert.Equal(t, want, got)
	reasons := map[string]int{}
	for _, e := range got {
		reasons[e.Reason]++
	}
	assert.Positive(t, reasons["share"], "some were shed at the starting share")
	assert.Positive(t, reasons["ramp"], "some were admitted within it")

	// Unnamed, a gate reports as "slowstart".
	got = nil
	g, _ = newGate(t, Config{Observe: &observe.Hooks{SlowStart: func(e observe.SlowStart) { got = append(got, e) }}})
	_, err = g.Admit(context.Background(), "x")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "slowstart", got[0].Policy)
}
