package simulate

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
