package invalidate

import (
	"fmt"
	"math"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Defaults of Guard's zero fields.
const (
	defaultGuardMinDuration = 10 * time.Minute
	defaultGuardMinCohorts  = 10
	defaultGuardShare       = 0.5
)

// defaultGuardStarts is the default budget of guarded starts, per node and
// per By: 3 per 10 minutes, at most 3 at once.
var defaultGuardStarts = limiter.Limit{Rate: 3, Period: 10 * time.Minute, Burst: 3}

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
//     ("node:" + Config.Node) and whoever asked ("by:" + Rollout.By), so
//     that neither one node (whoever it names) nor one requester (from
//     whichever node) can start many; an over-budget start fails with a
//     *StartRefusedError saying whose budget is spent and when it may
//     retry. The tokens are taken only once the store has checked that the
//     start would be accepted, so a refused or failing start (an epoch
//     going backwards, a full namespace) spends none.
//
// Guard is Config.Guard; its zero value has every field at its default.
type Guard struct {
	// MinDuration is the least running time of a guarded rollout. If
	// MinDuration is 0, 10 min; otherwise at least 1 s: a guarded rollout
	// is never instant.
	MinDuration time.Duration
	// MaxRate caps the pace of a guarded rollout, in clients per second. If
	// MaxRate is 0, no cap beyond Rollout.Rate; otherwise at least 1e-6.
	MaxRate float64
	// MinCohorts is the fewest cohorts a guarded rollout may have. If
	// MinCohorts is 0, 10; at most limiter.MaxCohorts.
	MinCohorts int
	// Share is the Coverage above which a rollout is guarded. If Share is
	// 0, 0.5; otherwise in (0, 1].
	Share float64
	// Starts budgets guarded starts, keyed "node:<Config.Node>" and
	// "by:<Rollout.By>": a start needs a token under both. If Starts is
	// nil, 3 starts per 10 minutes (at most 3 at once) per key on a budget
	// the store provides: fleet-wide on a RedisStore (a fleet.Strict on
	// the store's Redis, named after its namespace, failing closed, opened
	// for each guarded start and closed after it, so that nothing needs
	// closing), shared by every coordinator of the store on a MemoryStore
	// (a limiter.Local); either on the coordinator's clock.
	Starts limiter.Budget
}

// withDefaults fills the zero fields; Starts is filled by NewCoordinator.
func (g Guard) withDefaults() Guard {
	if g.MinDuration == 0 {
		g.MinDuration = defaultGuardMinDuration
	}
	if g.MinCohorts == 0 {
		g.MinCohorts = defaultGuardMinCohorts
	}
	if g.Share == 0 {
		g.Share = defaultGuardShare
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

// StartRefusedError is the error of a guarded start over the budget of its
// requester or of its node. It wraps ErrStartRefused.
type StartRefusedError struct {
	// By is the Rollout.By of the refused start.
	By string
	// Node is the node that was asked to start it (Config.Node).
	Node string
	// BySpent and NodeSpent say whose budget is used up: the requester's,
	// the node's, or both.
	BySpent, NodeSpent bool
	// RetryAfter is how long until the budgets would allow one more start.
	RetryAfter time.Duration
	// Limit is the budget's limit.
	Limit limiter.Limit
}

// Error says why, and when the start may be retried.
func (e *StartRefusedError) Error() string {
	who := fmt.Sprintf("by %q", e.By)
	switch {
	case e.NodeSpent && e.BySpent:
		who = fmt.Sprintf("by %q and on node %q", e.By, e.Node)
	case e.NodeSpent:
		who = fmt.Sprintf("on node %q (asked by %q)", e.Node, e.By)
	}
	return fmt.Sprintf("%v: the budget of guarded starts %s is used up (%v; a rollout is guarded when its scope is everything, or it covers an unknown or large share of clients, or its population is unknown); it may retry in %v",
		ErrStartRefused, who, e.Limit, e.RetryAfter)
}

// Unwrap returns ErrStartRefused.
func (e *StartRefusedError) Unwrap() error { return ErrStartRefused }
