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

// DefaultGuardStarts is the default budget of guarded starts, per node and
// per source: 3 per 10 minutes, at most 3 at once.
var DefaultGuardStarts = limiter.Limit{Rate: 3, Period: 10 * time.Minute, Burst: 3}

// Guard treats a broad invalidation as suspect, whoever asks: the incident
// was one server telling every client to drop everything at once. A rollout
// is guarded when its Scope is ScopeAll, its Coverage is unknown (0) or
// above Share, or its population is unknown (Rollout.Clients 0: how broad
// it is, and so how fast its waves may go, is then unknown too). A guarded
// rollout
//
//   - is never instant: it takes at least MinDuration of running time,
//     whatever Rollout.MinDuration asks, and has at least MinCohorts
//     cohorts (Start refuses fewer, naming the field);
//   - is paced at no more than MaxRate clients per second when MaxRate is
//     set, whatever Rollout.Rate asks;
//   - needs a token from Starts under two keys, the coordinator's node
//     ("node:" + WithNode) and the rollout's source ("source:" +
//     Rollout.Source), so that neither one node (whatever sources it
//     names) nor one source (from whichever node) can start many; an
//     over-budget start fails with a *StartRefusedError saying which
//     budget is spent and when it may retry. The tokens are taken only
//     once the store has checked that the start would be accepted, so a
//     refused or failing start (an epoch going backwards, a full
//     namespace) spends none.
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
	// Starts budgets guarded starts, keyed "node:<node>" and
	// "source:<Rollout.Source>": a start needs a token under both. nil
	// means DefaultGuardStarts on a budget the store provides: fleet-wide
	// on a RedisStore (a fleet.Strict on the store's client, prefix and
	// namespace, failing closed, opened for each guarded start and closed
	// after it, so that nothing needs closing), shared by every
	// coordinator of the store on a MemoryStore (a limiter.Local); either
	// takes the coordinator's clock.
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
	return r.Scope == ScopeAll || r.Coverage == 0 || r.Coverage > g.Share || r.Clients == 0
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
		return st, fmt.Errorf("%w: Rollout.Cohorts must be at least %d for a guarded rollout (scope %q, coverage %v, clients %d), got %d",
			ErrInvalidRollout, g.MinCohorts, truncate(r.Scope, 64), r.Coverage, r.Clients, r.Cohorts)
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

// StartRefusedError is the error of a guarded start over its node's or its
// source's budget. It wraps ErrStartRefused.
type StartRefusedError struct {
	// Source is the Rollout.Source of the refused start.
	Source string
	// Node is the node that was asked to start it (WithNode).
	Node string
	// SourceSpent and NodeSpent say whose budget is used up: the source's,
	// the node's, or both.
	SourceSpent, NodeSpent bool
	// RetryAfter is how long until the budgets would allow one more start.
	RetryAfter time.Duration
	// Limit is the budget's limit.
	Limit limiter.Limit
}

// Error says why, and when the start may be retried.
func (e *StartRefusedError) Error() string {
	who := fmt.Sprintf("source %q", e.Source)
	switch {
	case e.NodeSpent && e.SourceSpent:
		who = fmt.Sprintf("source %q and node %q", e.Source, e.Node)
	case e.NodeSpent:
		who = fmt.Sprintf("node %q (asked by source %q)", e.Node, e.Source)
	}
	return fmt.Sprintf("%v: %s has used its budget of guarded starts (%v; a rollout is guarded when its scope is everything, or it covers an unknown or large share of clients, or its population is unknown); it may retry in %v",
		ErrStartRefused, who, e.Limit, e.RetryAfter)
}

// Unwrap returns ErrStartRefused.
func (e *StartRefusedError) Unwrap() error { return ErrStartRefused }
