package invalidate

import (
	"fmt"
	"math"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Defaults of Guard's zero fields.
const (
	// DefaultGuardMinDuration is the least time a guarded rollout takes.
	DefaultGuardMinDuration = 10 * time.Minute
	// DefaultGuardMinCohorts is the fewest cohorts a guarded rollout may
	// have.
	DefaultGuardMinCohorts = 10
	// DefaultGuardShare is the coverage above which a rollout is guarded.
	DefaultGuardShare = 0.5
)

// DefaultGuardStarts is the default per-source budget of guarded starts:
// 3 per 10 minutes, at most 3 at once.
var DefaultGuardStarts = limiter.Limit{Rate: 3, Period: 10 * time.Minute, Burst: 3}

// Guard treats a broad invalidation as suspect, whoever asks: the incident
// was one server telling every client to drop everything at once. A rollout
// is guarded when its Scope is ScopeAll, or its Coverage is unknown (0) or
// above Share. A guarded rollout
//
//   - is never instant: it takes at least MinDuration of running time,
//     whatever Rollout.MinDuration asks, and has at least MinCohorts
//     cohorts (Start refuses fewer, naming the field);
//   - is paced at no more than MaxRate clients per second when MaxRate is
//     set, whatever Rollout.Rate asks;
//   - needs a token from Starts, a budget keyed by Rollout.Source, so that
//     no single node can start many; an over-budget start fails with a
//     *StartRefusedError saying when it may retry.
//
// Zero fields take the defaults stated on them.
type Guard struct {
	// MinDuration is the least running time of a guarded rollout; 0 means
	// DefaultGuardMinDuration. It must be >= 1s: a guarded rollout is never
	// instant.
	MinDuration time.Duration
	// MaxRate caps the pace of a guarded rollout, in clients per second; 0
	// means no cap beyond Rollout.Rate.
	MaxRate float64
	// MinCohorts is the fewest cohorts a guarded rollout may have; 0 means
	// DefaultGuardMinCohorts.
	MinCohorts int
	// Share is the Coverage above which a rollout is guarded, in (0, 1]; 0
	// means DefaultGuardShare.
	Share float64
	// Starts budgets guarded starts per Rollout.Source (the key). nil means
	// a limiter.Local enforcing DefaultGuardStarts on the coordinator's
	// clock; pass a limiter.Redis to budget each source fleet-wide.
	Starts limiter.Budget
}

// WithGuard sets the guard (see Guard). Default: Guard{}, every field at its
// default.
func WithGuard(g Guard) Option {
	return Option{name: "WithGuard", scope: forCoordinator, apply: func(o *config) error {
		switch {
		case g.MinDuration != 0 && g.MinDuration < time.Second:
			return fmt.Errorf("Guard.MinDuration must be 0 (default) or >= 1s, got %v", g.MinDuration)
		case math.IsNaN(g.MaxRate) || math.IsInf(g.MaxRate, 0) || g.MaxRate < 0 || (g.MaxRate > 0 && g.MaxRate < MinRate):
			return fmt.Errorf("Guard.MaxRate must be 0 (no cap) or between %g and %g, got %v", MinRate, float64(MaxRate), g.MaxRate)
		case g.MinCohorts < 0 || g.MinCohorts > maxCohorts:
			return fmt.Errorf("Guard.MinCohorts must be 0 (default) to %d, got %d", maxCohorts, g.MinCohorts)
		case math.IsNaN(g.Share) || g.Share < 0 || g.Share > 1:
			return fmt.Errorf("Guard.Share must be in [0, 1] (0: default), got %v", g.Share)
		}
		o.guard = g
		return nil
	}}
}

// withDefaults fills the zero fields; Starts is filled by NewCoordinator.
func (g Guard) withDefaults() Guard {
	if g.MinDuration == 0 {
		g.MinDuration = DefaultGuardMinDuration
	}
	if g.MinCohorts == 0 {
		g.MinCohorts = DefaultGuardMinCohorts
	}
	if g.Share == 0 {
		g.Share = DefaultGuardShare
	}
	return g
}

// guarded reports whether g applies to r.
func (g *Guard) guarded(r *Rollout) bool {
	return r.Scope == ScopeAll || r.Coverage == 0 || r.Coverage > g.Share
}

// pace returns the state template of r: the pace in force after the guard.
func (g *Guard) pace(r *Rollout) (state, error) {
	st := state{
		epoch:   r.Epoch,
		cohorts: r.Cohorts,
		rate:    r.Rate,
		minDur:  ceilMicros(r.MinDuration),
		clients: int64(r.Clients),
		guarded: g.guarded(r),
	}
	if !st.guarded {
		return st, nil
	}
	if r.Cohorts < g.MinCohorts {
		return st, fmt.Errorf("%w: Rollout.Cohorts must be at least %d for a guarded rollout (scope %q, coverage %v), got %d",
			ErrInvalidRollout, g.MinCohorts, truncate(r.Scope, 64), r.Coverage, r.Cohorts)
	}
	st.minDur = max(st.minDur, ceilMicros(g.MinDuration))
	if g.MaxRate > 0 {
		st.rate = math.Min(st.rate, g.MaxRate)
	}
	return st, nil
}

func ceilMicros(d time.Duration) int64 {
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// StartRefusedError is the error of a guarded start over its source's
// budget. It wraps ErrStartRefused.
type StartRefusedError struct {
	// Source is the Rollout.Source that was refused.
	Source string
	// RetryAfter is how long until the budget would allow one more start.
	RetryAfter time.Duration
	// Limit is the budget's limit.
	Limit limiter.Limit
}

// Error says why, and when the source may retry.
func (e *StartRefusedError) Error() string {
	return fmt.Sprintf("%v: source %q has used its budget of guarded starts (%v; a rollout is guarded when its scope is everything or covers an unknown or large share of clients); it may retry in %v",
		ErrStartRefused, e.Source, e.Limit, e.RetryAfter)
}

// Unwrap returns ErrStartRefused.
func (e *StartRefusedError) Unwrap() error { return ErrStartRefused }
