package simulate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCollapseNotJudged: a run too short to judge a collapse reads "not
// judged", and a bound on "collapsed" fails on it whichever way it bounds
// it; a run long enough is judged, and its bound passes or fails on the
// verdict.
func TestCollapseNotJudged(t *testing.T) {
	sc := &Scenario{Origin: OriginSpec{Capacity: 100}}
	mk := func(secs int) *Result {
		r := &Result{Series: newSeries(secs), ScheduleS: 100, WaveS: 1, Affected: 1000}
		for i := range secs {
			r.Series.Goodput[i] = 50
			r.Series.Requests[i] = 100
		}
		return r
	}
	short, long := mk(400), mk(1800)
	short.collapse(sc, 120)
	long.collapse(sc, 120)
	assert.False(t, short.CollapseJudged)
	assert.Zero(t, short.CollapseWindowS)
	assert.True(t, long.CollapseJudged)
	assert.False(t, long.Collapsed)

	zero, one := 0.0, 1.0
	notCollapsed := Bound{Run: Protected, Metric: "collapsed", Max: &zero}
	collapsed := Bound{Run: Unprotected, Metric: "collapsed", Min: &one}
	peak := Bound{Run: Unprotected, Metric: "peak_over_steady", Min: &one}
	short.PeakOverSteady = 2

	pass, got := notCollapsed.check(short, short)
	assert.False(t, pass, "an unjudged run does not pass collapsed <= 0")
	assert.Equal(t, []string{"protected.collapsed = not judged"}, got)
	pass, got = collapsed.check(short, short)
	assert.False(t, pass)
	assert.Equal(t, []string{"unprotected.collapsed = not judged"}, got)
	pass, _ = notCollapsed.check(long, long)
	assert.True(t, pass, "judged and not collapsed")
	pass, _ = collapsed.check(long, long)
	assert.False(t, pass, "judged and not collapsed")

	// An alternative that is not judged fails; the others still count.
	pass, got = Bound{Any: []Bound{collapsed, peak}}.check(short, short)
	assert.True(t, pass)
	assert.Equal(t, []string{"unprotected.collapsed = not judged", "unprotected.peak_over_steady = 2"}, got)
	pass, _ = Bound{Any: []Bound{collapsed}}.check(short, short)
	assert.False(t, pass)

	checks, all := checkBounds(&Scenario{Bounds: []Bound{notCollapsed}}, short, short)
	assert.False(t, all)
	assert.Equal(t, []Check{{Bound: "protected.collapsed <= 0", Got: "protected.collapsed = not judged"}}, checks)
}

// TestProtectionRefusals: settings the protected run cannot keep are
// refused, naming the field; the same settings where they cannot matter
// are accepted.
func TestProtectionRefusals(t *testing.T) {
	incident := func(t *testing.T, edit func(*Scenario)) error {
		t.Helper()
		sc := builtin(t, "incident", 1_000_000)
		edit(sc)
		return sc.Validate()
	}
	cases := []struct {
		name string
		edit func(*Scenario)
		want string // "" for accepted
	}{
		{"origin budget above capacity", func(sc *Scenario) {
			sc.Origin.Capacity, sc.Protection.OriginBudget = 1800, 2200
		}, "scenario.protection.origin_budget: 2200 per second is above origin.capacity 1800: the protected run would overload the origin"},
		{"origin budget at capacity", func(sc *Scenario) { sc.Protection.OriginBudget = 2500 }, ""},
		{"admission above capacity", func(sc *Scenario) {
			sc.Protection.AdmissionRate = 2600
		}, "scenario.protection.admission_rate: 2600 sessions per second is above origin.capacity 2500 (each session is one origin call"},
		{"push interval's burst", func(sc *Scenario) {
			sc.Protection.PushInterval = Duration(100 * time.Millisecond)
		}, "scenario.protection.push_interval: 100ms makes the push budget's burst one interval of pushes: with push_budget at 1.02 × protection.rollout_rate a second of pushes can reach 1.122 × rollout_rate however large the fleet, above the bound protected.changed_over_budget <= 1.1 (bounds["},
		{"push interval within", func(sc *Scenario) { sc.Protection.PushInterval = Duration(78 * time.Millisecond) }, ""},
		{"push interval unbounded", func(sc *Scenario) {
			sc.Protection.PushInterval = Duration(time.Second)
			sc.Bounds = nil
		}, ""},
		{"push budget", func(sc *Scenario) {
			sc.Protection.PushBudget = 1080
		}, "scenario.protection.push_budget: 1080 per second is 1.08 × protection.rollout_rate: with its burst (up to 5% of a peak window's pushes) a window can see 1.134 × rollout_rate, above the bound protected.changed_over_budget <= 1.1 (bounds["},
		{"tighter bound", func(sc *Scenario) {
			b := 1.05
			sc.Bounds = append(sc.Bounds, Bound{Run: Protected, Metric: "changed_over_budget", Max: &b})
		}, "scenario.protection.push_budget: 1020 per second is 1.02 × protection.rollout_rate: with its burst (up to 5% of a peak window's pushes) a window can see 1.071 × rollout_rate, above the bound protected.changed_over_budget <= 1.05 (bounds["},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := incident(t, c.edit)
			if c.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidScenario)
			assert.Contains(t, err.Error(), c.want)
		})
	}

	// The refusals say what would be accepted.
	sc := builtin(t, "incident", 1_000_000)
	sc.Protection.PushInterval = Duration(100 * time.Millisecond)
	assert.ErrorContains(t, sc.Validate(), "; at most 78ms")
	sc.Protection.PushInterval, sc.Protection.PushBudget = Duration(40*time.Millisecond), 1080
	assert.ErrorContains(t, sc.Validate(), "; at most 1.048 × rollout_rate")

	// Without sessions the admission rate cannot reach the origin.
	sc = builtin(t, "rogue-invalidate", 1_000_000)
	sc.Protection.AdmissionRate = 1e6
	assert.NoError(t, sc.Validate())
	sc.Client.DisconnectOnError = true
	assert.ErrorContains(t, sc.Validate(), "scenario.protection.admission_rate: 1e+06 sessions per second is above origin.capacity 2500")

	// The refusals are size-free: they hold at every scale.
	sc = builtin(t, "incident", 1_000_000)
	sc.Protection.PushInterval = Duration(100 * time.Millisecond)
	_, err := sc.Scale(1000)
	assert.ErrorContains(t, err, "scenario.protection.push_interval")

	// The misconfiguration, from JSON.
	_, err = ParseScenario([]byte(`{"name":"m","clients":100000,"origin":{"capacity":1800},
		"protection":{"origin_budget":2200,"rollout_rate":2200,"admission_rate":2200},"trigger":{"kind":"incident"}}`))
	assert.ErrorContains(t, err, "scenario.protection.origin_budget: 2200 per second is above origin.capacity 1800")
}

// TestWarnings: the built-ins at the sizes CI runs draw none; a rollout
// faster than its origin budget, reconnects faster than it, a run too
// short to judge a collapse and a size too small for one-second peaks
// each draw one naming the field.
func TestWarnings(t *testing.T) {
	for _, name := range builtinOrder {
		for _, n := range []int{1000, 7777, 1_000_000} {
			sc := builtin(t, name, n)
			if sc.warmKind() && n < gateClients {
				// A warm on a budget of burst 1 gets nothing: these run
				// from gateClients (TestCacheBuiltIns) and say so below.
				assert.Len(t, sc.Warnings(), 1, "%s at %d", name, n)
				assert.Contains(t, sc.Warnings()[0], "scenario.protection.origin_budget:", "%s at %d", name, n)
				continue
			}
			assert.Empty(t, sc.Warnings(), "%s at %d", name, n)
		}
	}
	sc := builtin(t, "rogue-invalidate", 1_000_000)
	sc.Protection.RolloutRate, sc.Protection.PushBudget = 5000, 5100
	assert.Equal(t, []string{"scenario.protection.rollout_rate: 5000 clients per second × 1 fetch each is 5000 origin calls per second, above protection.origin_budget 2000 (assuming every fetch misses the node cache): the origin budget will pace the rollout, which will converge slower than its schedule"}, sc.Warnings())

	sc = builtin(t, "incident", 1_000_000)
	sc.Protection.RolloutRate, sc.Protection.PushBudget = 1200, 1224
	w := sc.Warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0], "scenario.protection.rollout_rate: 1200 clients per second × 1 fetch and 1 session (client.reconnect_on_invalidate) each is 2400 origin calls per second")

	sc = builtin(t, "reconnect-storm", 1_000_000)
	sc.Protection.AdmissionRate = 2400
	assert.Equal(t, []string{"scenario.protection.admission_rate: 2400 sessions per second is above protection.origin_budget 2000: the origin budget, not the admission, will pace the reconnects"}, sc.Warnings())

	sc = builtin(t, "incident", 1000)
	sc.Duration = Duration(20 * time.Minute)
	w = sc.Warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0], "scenario.duration: 20m0s is too short to judge a collapse")
	// 2 min to the trigger, a 1,000 s rollout and its last 0.1 s wave, and
	// the 5-minute window.
	assert.Contains(t, w[0], "(about 1000 s)")
	assert.Contains(t, w[0], "make it at least 23m41s")

	w = builtin(t, "incident", 100).Warnings()
	require.Len(t, w, 2)
	assert.Contains(t, w[0], "scenario.clients: at 100 clients the origin budget (0.2 per second) is judged over 100 s windows")
	assert.Contains(t, w[1], "scenario.clients: at 100 clients the change is judged over")
}

// TestShortRunNotJudged: a 20-minute incident cannot judge a collapse, and
// its bound on protected.collapsed fails as "not judged" instead of
// passing, as it did.
func TestShortRunNotJudged(t *testing.T) {
	modelCheck(t)
	sc := builtin(t, "incident", 1000)
	sc.Duration = Duration(20 * time.Minute)
	c, err := Compare(context.Background(), sc, Config{})
	require.NoError(t, err)
	assert.False(t, c.Protected.CollapseJudged)
	assert.False(t, c.Pass)
	var found bool
	for _, ch := range c.Checks {
		if ch.Bound == "protected.collapsed <= 0" {
			found = true
			assert.False(t, ch.Pass)
			assert.Equal(t, "protected.collapsed = not judged", ch.Got)
		}
	}
	assert.True(t, found)
	sc.Duration = Duration(30 * time.Minute)
	c, err = Compare(context.Background(), sc, Config{})
	require.NoError(t, err)
	assert.True(t, c.Protected.CollapseJudged)
}

// TestHeadroomLiftsBudgetRefusals: with protection.headroom the origin
// budget and admission rate above capacity are caps, not refusals, and the
// warnings about them go; a floor above capacity is refused.
func TestHeadroomLiftsBudgetRefusals(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"name":"t","clients":100000,"origin":{"capacity":1800},
		"protection":{"origin_budget":3600,"rollout_rate":3600,"admission_rate":3600,"headroom":{"ceiling":3600}},"trigger":{"kind":"incident"}}`))
	require.NoError(t, err)
	assert.Equal(t, 36.0, sc.Protection.Headroom.Floor, "1% of the ceiling")
	assert.Equal(t, 3600.0, sc.Protection.Headroom.Initial, "the origin budget")
	assert.Equal(t, 1.0, sc.Protection.CallsPerClient, "one fetch per told client")
	assert.Empty(t, sc.Warnings())
	_, err = ParseScenario([]byte(`{"name":"t","clients":100000,"origin":{"capacity":1800},
		"protection":{"headroom":{"floor":2000,"ceiling":3600}},"trigger":{"kind":"incident"}}`))
	assert.ErrorContains(t, err, "scenario.protection.headroom.floor: 2000 per second is above origin.capacity 1800")
}
