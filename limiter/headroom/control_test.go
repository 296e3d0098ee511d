package headroom

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/origin"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// simBounds are the bounds of the simulated origin "db".
var simBounds = Bounds{Floor: 10, Ceiling: 10_000, Initial: 100}

// newSim returns a run of three nodes: on one memory controller they all
// record into, or (shared) on a controller each, sharing Redis through
// the clients made by client.
func newSim(t *testing.T, shared func(t *testing.T) fleet.Redis, b Bounds) *simRun {
	t.Helper()
	clk := fakeclock.New(t0)
	cfg := Config{Origins: map[string]Bounds{"db": b}, Clock: clk}
	r := &simRun{clk: clk, interval: time.Second,
		org: simOrigin{capacity: 1000, base: 5 * time.Millisecond, timeout: 500 * time.Millisecond, maxQueue: 1000}}
	var mem *Controller
	for range 3 {
		var c *Controller
		var err error
		switch {
		case shared != nil:
			c, err = NewShared(shared(t), SharedConfig{Config: cfg})
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
		case mem == nil:
			mem, err = New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = mem.Close() })
			c = mem
		default:
			c = mem
		}
		o, err := c.Origin("db")
		require.NoError(t, err)
		r.nodes = append(r.nodes, &simNode{o: o, nodes: 3})
	}
	return r
}

func constant(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }

// limitAt returns node 0's limit after the interval that ends at sim time
// d.
func (r *simRun) limitAt(d time.Duration) float64 { return r.trace[int(d/r.interval)-1][0] }

// swing returns max/min of node 0's limit over the intervals ending in
// [from, to].
func (r *simRun) swing(from, to time.Duration) (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for d := from; d <= to; d += r.interval {
		l := r.limitAt(d)
		lo, hi = math.Min(lo, l), math.Max(hi, l)
	}
	return lo, hi
}

// checkStepChange runs the capacity step of the package's contract: 1000
// calls/s for 60 s, 500 for 120 s, 1000 again for 120 s, under a demand of
// 3000 calls/s, then 60 s of demand far below capacity; and checks the
// limit's response.
func checkStepChange(t *testing.T, r *simRun) {
	const c = 1000.0
	capacity := func(d time.Duration) float64 {
		if d >= 60*time.Second && d < 180*time.Second {
			return c / 2
		}
		return c
	}
	r.run(300*time.Second, constant(3*c), capacity)
	r.run(60*time.Second, constant(c/5), capacity)
	logTrace(t, r)

	// Before the drop the limit found the capacity.
	lo, hi := r.swing(40*time.Second, 60*time.Second)
	assert.GreaterOrEqual(t, lo, 0.85*c, "settled below capacity before the drop")
	assert.LessOrEqual(t, hi/lo, 1.10, "swing before the drop: %.0f-%.0f", lo, hi)
	// Within 3 s of the drop, the limit is at most 1.1 × the new capacity,
	// and stays there.
	_, hi = r.swing(63*time.Second, 180*time.Second)
	assert.LessOrEqual(t, hi, 1.1*c/2, "limit after the drop")
	lo, hi = r.swing(80*time.Second, 180*time.Second)
	assert.LessOrEqual(t, hi/lo, 1.10, "swing 20 s after the drop: %.0f-%.0f", lo, hi)
	assert.GreaterOrEqual(t, lo, 0.8*c/2, "settled at the new capacity")
	// Within 10 s of the return, >= 0.9 × capacity.
	assert.GreaterOrEqual(t, r.limitAt(190*time.Second), 0.9*c, "limit 10 s after the return")
	lo, hi = r.swing(200*time.Second, 300*time.Second)
	assert.LessOrEqual(t, hi/lo, 1.10, "swing 20 s after the return: %.0f-%.0f", lo, hi)
	// Overshoot: never above 1.05 × capacity two intervals running.
	for d := 181 * time.Second; d <= 300*time.Second; d += time.Second {
		if r.limitAt(d) > 1.05*c && r.limitAt(d-time.Second) > 1.05*c {
			t.Errorf("overshoot > 5%% for two intervals at %v: %.0f, %.0f", d, r.limitAt(d-time.Second), r.limitAt(d))
		}
	}
	// Demand far below capacity: the limit does not rise. (A shared
	// controller's step at 301 s still runs on the interval before 300 s,
	// of full demand: see reportScript.)
	lo, hi = r.swing(302*time.Second, 360*time.Second)
	assert.Equal(t, lo, hi, "the limit moved without demand")
	assert.LessOrEqual(t, hi, r.limitAt(301*time.Second), "the limit rose without demand")
}

func logTrace(t *testing.T, r *simRun) {
	t.Helper()
	s := ""
	for i, row := range r.trace {
		s += fmt.Sprintf(" %d:%.0f", i+1, row[0])
		if (i+1)%20 == 0 {
			s += "\n"
		}
	}
	t.Logf("limit by second:\n%s", s)
}

// checkIdle runs a demand far below the origin's capacity from the
// start: the limit must not move from its initial value.
func checkIdle(t *testing.T, r *simRun) {
	r.run(120*time.Second, constant(50), constant(1000))
	lo, hi := r.swing(time.Second, 120*time.Second)
	assert.Equal(t, simBounds.Initial, lo)
	assert.Equal(t, simBounds.Initial, hi)
	assert.Equal(t, int64(0), r.nodes[0].o.Stats().Overload+r.nodes[0].o.Stats().Timeout)
}

func TestIdleMemory(t *testing.T) { checkIdle(t, newSim(t, nil, simBounds)) }

func TestIdleRedis(t *testing.T) { checkIdle(t, newSim(t, onServer("idle"), simBounds)) }

func TestStepChangeMemory(t *testing.T) {
	checkStepChange(t, newSim(t, nil, simBounds))
}

// checkFailing runs an origin that fails every call, from a limit of 1000
// calls/s: the limit must reach the floor within
// log(limit/floor)/log(1/(1−MaxFall)) intervals, plus lag intervals.
func checkFailing(t *testing.T, r *simRun, lag int) {
	r.org.failing = true
	r.run(20*time.Second, constant(3000), constant(1000))
	want := int(math.Ceil(math.Log(1000/10.0)/math.Log(2))) + lag
	got := -1
	for i, row := range r.trace {
		if row[0] == 10 && got < 0 {
			got = i + 1
		}
		if got >= 0 {
			assert.Equal(t, 10.0, row[0], "left the floor at %d s", i+1)
		}
	}
	assert.True(t, got > 0 && got <= want, "floor reached after %d intervals, want <= %d", got, want)
}

func TestFailingMemory(t *testing.T) {
	b := simBounds
	b.Initial = 1000
	checkFailing(t, newSim(t, nil, b), 0)
}

var _ = limiter.ErrClosed

// runs numbers the Names of shared controllers, so that a test run again
// (-count) shares no state with its earlier runs.
var runs atomic.Int64

// onServer returns fleet.Redis settings for the package's server under a
// Name of the test's own.
func onServer(name string) func(t *testing.T) fleet.Redis {
	name = fmt.Sprintf("%s-%d", name, runs.Add(1))
	return func(t *testing.T) fleet.Redis {
		return fleet.Redis{Client: srv.Client(t), Name: name, Timeout: time.Second}
	}
}

// checkSameLimit checks that every node applies the limit some node
// applied in the same interval or the one before: the nodes agree within
// one interval.
func checkSameLimit(t *testing.T, r *simRun) {
	t.Helper()
	for i, row := range r.trace {
		for j, l := range row {
			ok := false
			for _, prev := range [][]float64{row, r.trace[max(0, i-1)]} {
				for _, v := range prev {
					ok = ok || math.Abs(v-l) <= 1e-9*l
				}
			}
			if !ok {
				t.Fatalf("interval %d: node %d applies %v, the others %v (before: %v)", i+1, j, l, row, r.trace[max(0, i-1)])
			}
		}
	}
}

func TestStepChangeRedis(t *testing.T) {
	r := newSim(t, onServer("step-change"), simBounds)
	checkStepChange(t, r)
	checkSameLimit(t, r)
	st := r.nodes[0].o.Stats()
	assert.Equal(t, limiter.ViaRedis, st.Via)
	assert.Equal(t, int64(3), st.Live)
}

func TestStepChangeCluster(t *testing.T) {
	name := fmt.Sprintf("step-change-%d", runs.Add(1))
	r := newSim(t, func(t *testing.T) fleet.Redis {
		return fleet.Redis{Client: cluster.Client(t), Name: name, Timeout: time.Second}
	}, simBounds)
	checkStepChange(t, r)
	checkSameLimit(t, r)
}

func TestFailingRedis(t *testing.T) {
	b := simBounds
	b.Initial = 1000
	r := newSim(t, onServer("failing"), b)
	checkFailing(t, r, 1) // the shared limit lags one interval: see reportScript
	checkSameLimit(t, r)
}

// TestClockStepsBack: a fleet state left by a clock an hour ahead (or a
// clock stepped back) does not stall the shared limit until time catches
// up: the first report far behind becomes the current interval.
func TestClockStepsBack(t *testing.T) {
	r := onServer("steps-back")
	for i, start := range []time.Time{t0.Add(time.Hour), t0} {
		clk := fakeclock.New(start)
		c, err := NewShared(r(t), SharedConfig{Config: Config{Origins: map[string]Bounds{"db": simBounds}, Clock: clk}})
		require.NoError(t, err)
		o, err := c.Origin("db")
		require.NoError(t, err)
		for range 5 {
			for range int(o.Limit().Rate) + 10 {
				o.Record(origin.Foreground, 5*time.Millisecond, origin.Success)
			}
			clk.Add(time.Second)
		}
		st := o.Stats()
		require.NoError(t, c.Close())
		assert.Equal(t, limiter.ViaRedis, st.Via, "round %d", i)
		// Round 0 finalises 4 of its 5 intervals; round 1's first report
		// finalises round 0's last, and its next 4 its own first 4.
		assert.Equal(t, []int64{4, 9}[i], st.Intervals, "round %d: intervals run by the fleet", i)
	}
}
