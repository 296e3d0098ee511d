package report

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/plotter"

	"github.com/herdcap/herdcap/simulate"
)

// TestSegments: seconds without data are gaps; on a log axis zero counts
// are gaps too, never points at some floor.
func TestSegments(t *testing.T) {
	nan := math.NaN()
	v := []float64{0, 3, 4, 0, 0, 7, nan, 2, 5}
	log := segments(v, true)
	require.Len(t, log, 3)
	assert.Equal(t, []float64{3, 4}, ys(log[0]))
	assert.Equal(t, []float64{7}, ys(log[1]))
	assert.Equal(t, []float64{2, 5}, ys(log[2]))
	assert.InDelta(t, 1.0/60, log[0][0].X, 1e-12, "x in minutes")
	lin := segments(v, false)
	require.Len(t, lin, 2, "a linear axis draws zeros, not NaN")
	assert.Equal(t, []float64{0, 3, 4, 0, 0, 7}, ys(lin[0]))
	assert.Empty(t, segments([]float64{0, 0, nan}, true))
}

func ys(xy plotter.XYs) []float64 {
	out := make([]float64, len(xy))
	for i, p := range xy {
		out[i] = p.Y
	}
	return out
}

// TestLogTicks: every log axis gets at least two labelled ticks, all
// inside its range, with the powers of ten labelled.
func TestLogTicks(t *testing.T) {
	for _, r := range [][2]float64{{1, 15351}, {0.001, 45}, {0.003, 0.04}, {20, 30}, {0.5, 2}, {1, 10}, {1e-3, 1e7}} {
		ticks := logTicks{}.Ticks(r[0], r[1])
		var labels []string
		for _, tk := range ticks {
			require.True(t, tk.Value >= r[0]*(1-1e-9) && tk.Value <= r[1]*(1+1e-9), "%v: tick %v outside", r, tk.Value)
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		assert.GreaterOrEqual(t, len(labels), 2, "%v: %v", r, labels)
	}
	var labels []string
	for _, tk := range (logTicks{}).Ticks(1, 15351) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	assert.Equal(t, []string{"1", "10", "100", "1000", "10000"}, labels)
	assert.Empty(t, logTicks{}.Ticks(0, 10), "no log axis through zero")

	// On an axis of exponents the same ticks sit at their exponents.
	ex := exponentTicks{}.Ticks(0, math.Log10(15351))
	var at []float64
	for _, tk := range ex {
		if tk.Label != "" {
			at = append(at, tk.Value)
		}
	}
	assert.InDeltaSlice(t, []float64{0, 1, 2, 3, 4}, at, 1e-12)
}

// TestChartsRender: every chart renders with one x label, its y label,
// and a legend naming both runs.
func TestChartsRender(t *testing.T) {
	dir := written(t)
	for _, ch := range charts {
		if ch.when != nil {
			_, err := os.Stat(filepath.Join(dir, "incident-"+ch.file+".svg"))
			assert.ErrorIs(t, err, os.ErrNotExist, "%s: not the incident's chart", ch.file)
			continue // TestNodeHitChart
		}
		b, err := os.ReadFile(filepath.Join(dir, "incident-"+ch.file+".svg"))
		require.NoError(t, err, ch.file)
		svg := string(b)
		assert.Equal(t, 1, strings.Count(svg, "virtual time (minutes)"), "%s: one x label", ch.file)
		assert.Contains(t, svg, "protected", ch.file)
		assert.Contains(t, svg, "unprotected", ch.file)
		assert.Contains(t, svg, "trigger", ch.file)
	}
}

// TestChartHeadroomLimit: a scenario paced by headroom draws the limit the
// nodes applied on its origin chart, and one with fixed budgets does not.
func TestChartHeadroomLimit(t *testing.T) {
	sc, err := simulate.BuiltInNamed("misconfigured-budget")
	require.NoError(t, err)
	sc, err = sc.Scale(1000)
	require.NoError(t, err)
	sc.Duration = simulate.Duration(4 * time.Minute)
	c, err := simulate.Compare(context.Background(), sc, simulate.Config{})
	require.NoError(t, err)
	var origin chart
	for _, ch := range charts {
		if ch.file == "origin" {
			origin = ch
		}
	}
	require.NotNil(t, origin.extra)
	label, v := origin.extra(c)
	assert.Equal(t, "headroom limit (protected)", label)
	assert.Equal(t, c.Protected.Series.Limit, v)
	assert.Positive(t, v[0], "the limit is drawn from the start")
	b, err := renderChart(c, origin, "svg")
	require.NoError(t, err)
	assert.Contains(t, string(b), "headroom limit (protected)")

	b, err = renderChart(comparison(t), origin, "svg")
	require.NoError(t, err)
	assert.NotContains(t, string(b), "headroom limit", "fixed budgets draw no limit")
}

// TestNodeHitChart: the node hit rate chart is drawn for the triggers
// about the node caches only, fresh hits ÷ lookups per second, a second
// without lookups a gap.
func TestNodeHitChart(t *testing.T) {
	var ch chart
	for _, c := range charts {
		if c.file == "nodehit" {
			ch = c
		}
	}
	require.NotNil(t, ch.when)
	sc, err := simulate.BuiltInNamed("content-push")
	require.NoError(t, err)
	series := func(fresh ...float64) *simulate.Series {
		s := &simulate.Series{}
		for _, f := range fresh {
			s.Lookups = append(s.Lookups, 100)
			s.Fresh = append(s.Fresh, f)
		}
		s.Lookups[1] = 0
		return s
	}
	c := &simulate.Comparison{Scenario: sc,
		Unprotected: &simulate.Result{WarmKeys: 10, Series: series(90, 0, 10, 50)},
		Protected:   &simulate.Result{WarmKeys: 10, Series: series(90, 0, 60, 95)}}
	assert.True(t, ch.when(c))
	got := ch.get(c.Protected.Series)
	assert.Equal(t, 0.9, got[0])
	assert.True(t, math.IsNaN(got[1]), "no lookup, no rate")
	assert.Equal(t, []float64{0.6, 0.95}, got[2:])
	b, err := renderChart(c, ch, "svg")
	require.NoError(t, err)
	assert.Contains(t, string(b), "fresh hits ÷ node lookups")
	c.Protected.WarmKeys = -1 // another trigger
	assert.False(t, ch.when(c))
}
