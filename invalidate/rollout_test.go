package invalidate

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

func TestRolloutValidate(t *testing.T) {
	require.NoError(t, ro("ok").Validate())
	cases := []struct {
		name  string
		edit  func(r *Rollout)
		field string
	}{
		{"empty ID", func(r *Rollout) { r.ID = "" }, "Rollout.ID"},
		{"long ID", func(r *Rollout) { r.ID = strings.Repeat("x", maxIDLen+1) }, "Rollout.ID"},
		{"empty scope", func(r *Rollout) { r.Scope = "" }, "Rollout.Scope"},
		{"long scope", func(r *Rollout) { r.Scope = strings.Repeat("x", maxScopeLen+1) }, "Rollout.Scope"},
		{"huge epoch", func(r *Rollout) { r.Epoch = MaxEpoch + 1 }, "Rollout.Epoch"},
		{"no By", func(r *Rollout) { r.By = "" }, "Rollout.By"},
		{"long By", func(r *Rollout) { r.By = strings.Repeat("x", maxByLen+1) }, "Rollout.By"},
		{"zero cohorts", func(r *Rollout) { r.Cohorts = 0 }, "Rollout.Cohorts"},
		{"too many cohorts", func(r *Rollout) { r.Cohorts = limiter.MaxCohorts + 1 }, "Rollout.Cohorts"},
		{"negative cohorts", func(r *Rollout) { r.Cohorts = -3 }, "Rollout.Cohorts"},
		{"zero rate", func(r *Rollout) { r.Rate = 0 }, "Rollout.Rate"},
		{"negative rate", func(r *Rollout) { r.Rate = -1 }, "Rollout.Rate"},
		{"NaN rate", func(r *Rollout) { r.Rate = math.NaN() }, "Rollout.Rate"},
		{"infinite rate", func(r *Rollout) { r.Rate = math.Inf(1) }, "Rollout.Rate"},
		{"tiny rate", func(r *Rollout) { r.Rate = 1e-9 }, "Rollout.Rate"},
		{"huge rate", func(r *Rollout) { r.Rate = 1e13 }, "Rollout.Rate"},
		{"negative duration", func(r *Rollout) { r.MinDuration = -time.Second }, "Rollout.MinDuration"},
		{"negative clients", func(r *Rollout) { r.Clients = -1 }, "Rollout.Clients"},
		{"coverage above 1", func(r *Rollout) { r.Coverage = 1.5 }, "Rollout.Coverage"},
		{"negative coverage", func(r *Rollout) { r.Coverage = -0.1 }, "Rollout.Coverage"},
		{"NaN coverage", func(r *Rollout) { r.Coverage = math.NaN() }, "Rollout.Coverage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ro("ok")
			tc.edit(&r)
			err := r.Validate()
			assert.ErrorIs(t, err, ErrInvalidRollout)
			assert.ErrorContains(t, err, tc.field)
		})
	}
}

func TestPhaseString(t *testing.T) {
	for p, s := range map[Phase]string{Running: "running", Paused: "paused", Aborted: "aborted", Done: "done", 9: "Phase(9)"} {
		assert.Equal(t, s, p.String())
	}
	assert.True(t, Aborted.Finished())
	assert.True(t, Done.Finished())
	assert.False(t, Paused.Finished())
}

func TestGuardPace(t *testing.T) {
	g := Guard{MaxRate: 5}.withDefaults()
	r := Rollout{ID: "x", Scope: ScopeAll, Cohorts: 20, Rate: 100, MinDuration: time.Second, By: "s", Coverage: 0.01, Clients: 100}
	st, err := g.pace(&r)
	require.NoError(t, err)
	assert.True(t, st.guarded)
	assert.Equal(t, 5.0, st.rate)
	assert.Equal(t, defaultGuardMinDuration.Microseconds(), st.minDur)

	r.Scope, r.MinDuration = "tag:x", time.Hour
	st, err = g.pace(&r)
	require.NoError(t, err)
	assert.False(t, st.guarded)
	assert.Equal(t, 100.0, st.rate, "an unguarded rollout keeps its pace")
	assert.Equal(t, time.Hour.Microseconds(), st.minDur)

	r.MinDuration = time.Nanosecond
	st, _ = g.pace(&r)
	assert.Equal(t, int64(1), st.minDur, "durations round up to the µs, never down to nothing")

	r.Clients = 0
	st, err = g.pace(&r)
	require.NoError(t, err)
	assert.True(t, st.guarded, "an unknown population is guarded")
	assert.Equal(t, defaultGuardMinDuration.Microseconds(), st.minDur)
}
