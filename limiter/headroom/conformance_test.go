package headroom

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ledger is the Go model of reportScript's bookkeeping for one origin:
// reports of the current interval k add up, and the first report of a
// later interval (or of one more than two intervals before: time stepped
// back) finalises k with step.
type ledger struct {
	has bool
	k   int64
	acc tally
	st  state
}

func (l *ledger) report(b *Bounds, k int64, t tally, secs float64) {
	switch {
	case !l.has:
		l.has, l.k, l.st = true, k, newState(b.Initial)
	case k > l.k || k < l.k-2:
		step(b, &l.st, l.acc, secs)
		l.acc, l.k = tally{}, k
	}
	l.acc.add(t)
}

// randomTally returns the reports of a node of an origin around rate
// calls/s over secs: sometimes healthy, sometimes slow or failing, now and
// then empty.
func randomTally(rng *rand.Rand, rate, secs float64) tally {
	var t tally
	if rng.IntN(10) == 0 {
		return t
	}
	n := math.Floor(rate * secs * (0.5 + rng.Float64()))
	for lane := range 2 {
		t.refused[lane] = math.Floor(n * rng.Float64() * 0.3)
	}
	bad := 0.0
	if rng.IntN(10) == 0 {
		bad = math.Floor(n * rng.Float64() * 0.05)
	}
	t.out = [4]float64{n - bad, math.Floor(bad / 3), math.Floor(bad / 3), bad - 2*math.Floor(bad/3)}
	t.calls = [2]float64{math.Floor(n * 0.7), 0}
	t.calls[1] = n - t.calls[0]
	if t.out[0] > 0 {
		lat := 5e6 + float64(rng.IntN(1e6))
		if rng.IntN(6) == 0 {
			lat *= 2 + rng.Float64()*3 // slow
		}
		t.latMin = math.Floor(lat * (0.9 + rng.Float64()/10))
		t.latSum = math.Floor(lat * t.out[0])
	}
	return t
}

// TestConformance feeds the Lua step (reportScript on a real Redis) and
// the Go one (step, under ledger's bookkeeping) the same reports, from
// several nodes, with late reports and skipped intervals, and requires the
// same figures to 1e-9.
func TestConformance(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	origins := []*Origin{
		{name: "a", b: Bounds{Floor: 5, Ceiling: 5000, Initial: 300, Burst: defaultBurst, MaxRise: 0.2, MaxFall: 0.5, Tolerance: 0.5}},
		{name: "b", b: Bounds{Floor: 1, Ceiling: 80, Initial: 1, Burst: defaultBurst, MaxRise: 1, MaxFall: 0.1, Tolerance: 2}},
	}
	for _, o := range origins {
		o.publish(o.b.Initial, 0) // the start of a missing state, as reportArgs passes it
	}
	keys := []string{"herdcap:conformance:{h:conformance}:a", "herdcap:conformance:{h:conformance}:b"}
	require.NoError(t, c.Del(ctx, keys...).Err()) // a state of an earlier run (-count)
	iv := 2 * time.Second
	secs := float64(iv.Microseconds()) / 1e6
	models := make([]ledger, len(origins))
	rng := rand.New(rand.NewPCG(1, 2))
	k := int64(1000)
	var rose, fell, held int
	for range 2000 {
		switch r := rng.IntN(20); {
		case r < 6:
			k++ // the next interval
		case r == 6:
			k += 3 // intervals without reports
		case r == 7 && rng.IntN(10) == 0:
			k -= 5 // time stepped back
		}
		tag := k
		if rng.IntN(8) == 0 {
			tag = k - 1 // a late report
		}
		// The script tags a report round(now/iv) − 1.
		now := time.UnixMicro((tag + 1) * iv.Microseconds())
		tallies := make([]tally, len(origins))
		before := models[0].st.limit
		n := models[0].st.n
		for i := range origins {
			tallies[i] = randomTally(rng, models[i].st.limit/3+1, secs)
			models[i].report(&origins[i].b, tag, tallies[i], secs)
		}
		if models[0].st.n > n {
			switch l := models[0].st.limit; {
			case l > before:
				rose++
			case l < before:
				fell++
			default:
				held++
			}
		}
		args := reportArgs(nil, now, iv, 60_000, origins, tallies)
		v, err := reportScript.Run(ctx, c, keys, args...).Result()
		require.NoError(t, err)
		rows, err := parseReply(v, len(origins))
		require.NoError(t, err)
		for i, row := range rows {
			st := &models[i].st
			sat := 0.0
			if st.derive.saturated {
				sat = 1
			}
			want := []float64{st.limit, st.derive.spare, float64(st.n), st.last.calls[0], st.last.calls[1],
				st.last.refused[0], st.last.refused[1], st.last.out[0], st.last.out[1], st.last.out[2], st.last.out[3],
				st.derive.baseline, st.derive.sample, sat, st.cap}
			for j := range want {
				if math.Abs(row[j]-want[j]) > 1e-9*math.Max(1, math.Abs(want[j])) {
					t.Fatalf("origin %s, interval %d, figure %d: Lua %v, Go %v\nLua %v\nGo  %v", origins[i].name, st.n, j, row[j], want[j], row, want)
				}
			}
		}
	}
	t.Logf("intervals: %d (rose %d, fell %d, held %d); limits: a %.3f, b %.3f",
		models[0].st.n, rose, fell, held, models[0].st.limit, models[1].st.limit)
	require.Greater(t, models[0].st.n, int64(300))
	// Every branch of step ran often.
	require.Greater(t, rose, 30)
	require.Greater(t, fell, 30)
	require.Greater(t, held, 30)
}
