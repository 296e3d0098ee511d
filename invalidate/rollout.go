package invalidate

import (
	"fmt"
	"math"
	"time"

	"github.com/herdcap/herdcap/internal/rolloutlimit"
	"github.com/herdcap/herdcap/limiter"
)

// ScopeAll is the scope that tells every client to drop everything: the
// invalidation of the incident herdcap exists for. The guard always applies
// to it (see Guard).
const ScopeAll = "*"

// MaxEpoch is the largest epoch, 2^53-1: epochs stay exact in a float64,
// which is how the Redis store's Lua scripts hold them. A client that
// persists the epoch it has applied may check it against MaxEpoch.
const MaxEpoch = 1<<53 - 1

// Bounds on the fields of a Rollout; Validate's errors state them.
const (
	maxIDLen    = rolloutlimit.MaxIDLen
	maxScopeLen = rolloutlimit.MaxScopeLen
	maxByLen    = 256
	minRate     = 1e-6
	maxRate     = 1e12
	maxClients  = 1 << 40
)

// Rollout is one invalidation to roll out: clients are told to drop Scope in
// waves, cohort by cohort, at most Rate clients per second across the fleet,
// and never in less than MinDuration.
type Rollout struct {
	// ID is the idempotency key, 1 to 256 bytes: starting the same ID with
	// the same content again is a no-op, with different content an error
	// (ErrConflict). It also salts the cohorts, so that each rollout
	// reaches the clients in a different order.
	ID string
	// Scope is what clients drop, 1 to 4096 bytes: keys, prefixes or tags
	// the client understands; herdcap never looks inside, except to
	// recognise ScopeAll.
	Scope string
	// Epoch orders the rollouts of a namespace. Leave it 0 (recommended) to
	// have the store assign the next one; an explicit epoch must be above
	// every epoch the namespace has assigned (ErrEpochBackwards otherwise),
	// at most MaxEpoch, and no further ahead than Config.MaxEpochJump
	// allows (ErrEpochTooFar). See the package documentation on epochs.
	Epoch uint64
	// Cohorts is the number of "every Nth client" cohorts, 1 to
	// limiter.MaxCohorts. Clients are placed with limiter.Cohort(ID,
	// clientID, Cohorts) and cohorts are released in order 0, 1, 2, ...
	Cohorts int
	// Rate is the fleet-wide budget in clients per second, 1e-6 to 1e12:
	// cohorts are released no faster than this many clients per second,
	// counting the population (see Clients).
	Rate float64
	// MinDuration is the least time the whole rollout may take (>= 0): the
	// last cohort is released no earlier than MinDuration of running time
	// after the start. Zero means the rate alone paces it.
	MinDuration time.Duration
	// By names who asked: an operator, a tool, a node; 1 to 256 bytes. It
	// is logged, and the guard budgets starts per By (and per node: a
	// caller cannot escape the budget by varying it). It is not content:
	// the same rollout started again by another is a no-op, and the first
	// By is kept.
	By string
	// Clients is the caller's estimate of how many clients will be told
	// (the population polling this namespace), 0 to 2^40; 0 means unknown.
	// The pace is computed from the largest of Clients, the store's own
	// estimate of distinct clients seen (Config.PopulationWindow) and
	// Config.PopulationFloor, so underestimating cannot speed a rollout
	// up. A rollout of unknown population is guarded (see Guard), and
	// releases nothing until the estimate has warmed up
	// (Config.PopulationWarmup); a coordinator that does not estimate the
	// population refuses it unless it has a Config.PopulationFloor.
	Clients int
	// Coverage is the caller's estimate of the share of clients whose caches
	// hold data in Scope (and so will refetch), in [0, 1]; 0 means unknown.
	// A rollout with unknown coverage, or coverage above Guard.Share, is
	// guarded.
	Coverage float64
}

// Validate reports whether r is well formed. The error wraps
// ErrInvalidRollout and names the offending field. Whether the epoch goes
// backwards is known only to the store, at Start.
func (r Rollout) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRollout}, args...)...)
	}
	switch {
	case r.ID == "" || len(r.ID) > maxIDLen:
		return bad("Rollout.ID must be 1 to %d bytes, got %d", maxIDLen, len(r.ID))
	case r.Scope == "" || len(r.Scope) > maxScopeLen:
		return bad("Rollout.Scope must be 1 to %d bytes, got %d", maxScopeLen, len(r.Scope))
	case r.Epoch > MaxEpoch:
		return bad("Rollout.Epoch must be at most MaxEpoch (%d, 2^53-1), got %d", uint64(MaxEpoch), r.Epoch)
	case r.By == "" || len(r.By) > maxByLen:
		return bad("Rollout.By must be 1 to %d bytes, got %d", maxByLen, len(r.By))
	case math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0):
		return bad("Rollout.Rate must be finite, got %v", r.Rate)
	case r.Rate <= 0:
		return bad("Rollout.Rate must be > 0 clients per second, got %v", r.Rate)
	case r.Rate < minRate || r.Rate > maxRate:
		return bad("Rollout.Rate must be between %g and %g clients per second, got %v", minRate, float64(maxRate), r.Rate)
	case r.MinDuration < 0:
		return bad("Rollout.MinDuration must be >= 0, got %v", r.MinDuration)
	case r.Clients < 0 || r.Clients > maxClients:
		return bad("Rollout.Clients must be 0 to %d (2^40), got %d", int64(maxClients), r.Clients)
	case math.IsNaN(r.Coverage) || r.Coverage < 0 || r.Coverage > 1:
		return bad("Rollout.Coverage must be in [0, 1] (0 means unknown), got %v", r.Coverage)
	}
	if r.Cohorts < 1 || r.Cohorts > limiter.MaxCohorts {
		return fmt.Errorf("%w: Rollout.Cohorts must be between 1 and %d, got %d", ErrInvalidRollout, limiter.MaxCohorts, r.Cohorts)
	}
	return nil
}

// sameContent reports whether a and b ask for the same invalidation. By is
// left out: two nodes relaying one upstream event under one ID start the
// same rollout, and the first one's By is kept.
func sameContent(a, b Rollout) bool {
	a.By, b.By = "", ""
	return a == b
}

// Notice tells a client to drop Scope: what AppendDue returns. Every field
// is plain text or a number, so a transport can carry it in a header or a
// trailer (Scope is opaque bytes: quote or encode it as the transport
// needs).
type Notice struct {
	// RolloutID is the rollout's ID.
	RolloutID string
	// Scope is what to drop.
	Scope string
	// Epoch is the rollout's epoch. After applying every notice of one
	// AppendDue answer, the client records the highest Epoch as its
	// applied epoch.
	Epoch uint64
}

// Phase is where a rollout stands.
type Phase uint8

const (
	// Running: cohorts are being released.
	Running Phase = iota + 1
	// Paused: no cohort is released until Resume.
	Paused
	// Aborted: no further cohort will ever be released; clients of the
	// cohorts released before the abort are still told.
	Aborted
	// Done: every cohort is released.
	Done
)

// String returns "running", "paused", "aborted" or "done".
func (p Phase) String() string {
	switch p {
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Aborted:
		return "aborted"
	case Done:
		return "done"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Finished reports whether p is Aborted or Done.
func (p Phase) Finished() bool { return p == Aborted || p == Done }

// Status is a rollout as the store holds it.
type Status struct {
	// Rollout is the rollout as started, with Epoch the epoch it runs under
	// (assigned by the store when the caller left it 0) and By the first
	// requester.
	Rollout Rollout
	// Phase is where it stands.
	Phase Phase
	// Released is the number of cohorts released, 0 to Rollout.Cohorts:
	// cohorts 0 to Released-1.
	Released int
	// Guarded reports whether the guard applies (see Guard).
	Guarded bool
	// Rate is the pace in force, in clients per second: Rollout.Rate,
	// lowered to Guard.MaxRate when guarded.
	Rate float64
	// MinDuration is the least duration in force: Rollout.MinDuration,
	// raised to Guard.MinDuration when guarded.
	MinDuration time.Duration
	// Population is the client count the pace was last computed from: the
	// largest of Rollout.Clients and the store's estimates so far.
	Population int
	// CohortInterval is the running time each cohort takes at that
	// population: max(Population/(Cohorts*Rate), MinDuration/Cohorts).
	CohortInterval time.Duration
	// HoldUntil is the end of the rollout's latest hold, zero if it was
	// never held: no running time before it counts toward progress. A hold
	// is the warm-up of a rollout of unknown population
	// (Config.PopulationWarmup), the grace after a re-registration
	// (Config.RestoreGrace) or a health hold (Config.Health).
	HoldUntil time.Time
	// StartedAt is when the rollout was started; UpdatedAt when a cohort was
	// last released or the phase last changed; FinishedAt when it was done
	// or aborted (zero before).
	StartedAt, UpdatedAt, FinishedAt time.Time
}
