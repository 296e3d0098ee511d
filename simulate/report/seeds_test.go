package report

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/simulate"
)

func TestSpreadOf(t *testing.T) {
	sp := spreadOf("x", []float64{2, 4, 4, 4, 5, 5, 7, 9})
	assert.Equal(t, Spread{Metric: "x", N: 8, Mean: 5, Min: 2, Max: 9, StdDev: round6(math.Sqrt(32.0 / 7))}, sp)
	assert.Equal(t, Spread{Metric: "y", N: 1, Mean: 3, Min: 3, Max: 3}, spreadOf("y", []float64{3}), "one value: no spread")
	assert.Equal(t, Spread{Metric: "z", Mean: -1, Min: -1, Max: -1, StdDev: -1}, spreadOf("z", nil))
}

// seeded returns copies of the shared comparison under seeds 1..n, the
// protected run converging after 10·seed seconds but on seed 2, and the
// first bound failing on seed 3.
func seeded(t *testing.T, n int) []*simulate.Comparison {
	c := comparison(t)
	var cs []*simulate.Comparison
	for k := 1; k <= n; k++ {
		sc := *c.Scenario
		sc.Seed = uint64(k)
		pr := *c.Protected
		pr.ConvergeS, pr.Converged = float64(10*k), true
		if k == 2 {
			pr.ConvergeS, pr.Converged = -1, false
		}
		checks := append([]simulate.Check(nil), c.Checks...)
		for i := range checks {
			checks[i].Pass = true
		}
		pass := true
		if k == 3 {
			checks[0].Pass, pass = false, false
		}
		cs = append(cs, &simulate.Comparison{Scenario: &sc, Unprotected: c.Unprotected, Protected: &pr, Checks: checks, Pass: pass})
	}
	return cs
}

// TestSummarize: "never" (-1) is left out of a metric's statistics and
// counted; booleans average to a share; every seed keeps its verdict.
func TestSummarize(t *testing.T) {
	s, err := Summarize(seeded(t, 3))
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 2, 3}, s.Seeds)
	assert.False(t, s.Pass)
	get := func(sps []Spread, m string) Spread {
		for _, sp := range sps {
			if sp.Metric == m {
				return sp
			}
		}
		t.Fatalf("no metric %s", m)
		return Spread{}
	}
	assert.Equal(t, Spread{Metric: "converge_s", N: 2, Mean: 20, Min: 10, Max: 30, StdDev: round6(math.Sqrt(200))}, get(s.Protected, "converge_s"))
	conv := get(s.Protected, "converged")
	assert.Equal(t, 3, conv.N)
	assert.InDelta(t, 2.0/3, conv.Mean, 1e-5)
	assert.Equal(t, "2 of 3", formatSpread(conv, 3))
	assert.Equal(t, "20 ± 14.142 [10–30] (on 2 of 3; never on the others)", formatSpread(get(s.Protected, "converge_s"), 3))
	for _, m := range []string{"clients", "nodes", "seed"} {
		for _, sp := range s.Protected {
			assert.NotEqual(t, m, sp.Metric, "identification is not a metric")
		}
	}
	var b bytes.Buffer
	require.NoError(t, SeedTable(&b, []*SeedSummary{s}))
	out := b.String()
	assert.Contains(t, out, "== incident: 2000 clients, 10 nodes, 30m0s virtual, seeds 1..3 (3), memory store")
	assert.Contains(t, out, "bounds: FAIL (every bound held on 2 of 3 seeds)")
	assert.Contains(t, out, "  FAIL seed 3: "+s.Runs[2].Checks[0].Bound)
	assert.Equal(t, 1, strings.Count(out, "  FAIL seed"), "only the failed seed's failed bound")
	assert.NotContains(t, out, "redis ops", "no Redis rows on the memory store")

	_, err = Summarize(nil)
	assert.Error(t, err)
	other := seeded(t, 2)
	sc := *other[1].Scenario
	sc.Name = "other"
	other[1].Scenario = &sc
	_, err = Summarize(other)
	assert.ErrorContains(t, err, `scenarios "incident" and "other"`)
	_, err = Summarize([]*simulate.Comparison{{Scenario: &sc}})
	assert.ErrorContains(t, err, "incomplete")
}

func TestSeedRange(t *testing.T) {
	assert.Equal(t, "5..7 (3)", seedRange([]uint64{5, 6, 7}))
	assert.Equal(t, "5", seedRange([]uint64{5}))
	assert.Equal(t, "1, 3", seedRange([]uint64{1, 3}))
}
