package observe

import "time"

// Hooks receives the events of the components configured with it. Every
// field is optional: a nil func is not called, and the zero Hooks (or a
// nil *Hooks) observes nothing at no cost. See the package doc for the
// rules a component keeps when calling them.
type Hooks struct {
	// Decision is called for every decision of a budget (limiter.Local,
	// fleet.Strict, fleet.Leased), an origin guard, or a transport's
	// shadow policy.
	Decision func(Decision)
	// Breaker is called when a Redis circuit breaker changes state.
	Breaker func(Breaker)
	// Fallback is called when a Redis-backed budget starts answering from
	// its failure policy, and again when Redis answers once more.
	Fallback func(Fallback)
	// Lease is called when a fleet.Leased budget's lease exchange with
	// Redis completes.
	Lease func(Lease)
	// Admission is called for every decision of an admission gate.
	Admission func(Admission)
	// Rollout is called for the life events of an invalidation rollout.
	Rollout func(Rollout)
	// Warmup is called for a warm-up's progress and phase changes.
	Warmup func(Warmup)
	// Headroom is called when an origin's shared limit changes.
	Headroom func(Headroom)
	// SlowStart is called for every decision of a slow-start gate.
	SlowStart func(SlowStart)
}

// Join returns Hooks that call each non-nil hs's hooks, in order. Nil
// entries are skipped; a kind of event no hs observes stays nil, so it
// stays free. With a single non-nil argument, Join returns it.
func Join(hs ...*Hooks) *Hooks {
	var in []*Hooks
	for _, h := range hs {
		if h != nil {
			in = append(in, h)
		}
	}
	if len(in) == 1 {
		return in[0]
	}
	return &Hooks{
		Decision:  join(in, func(h *Hooks) func(Decision) { return h.Decision }),
		Breaker:   join(in, func(h *Hooks) func(Breaker) { return h.Breaker }),
		Fallback:  join(in, func(h *Hooks) func(Fallback) { return h.Fallback }),
		Lease:     join(in, func(h *Hooks) func(Lease) { return h.Lease }),
		Admission: join(in, func(h *Hooks) func(Admission) { return h.Admission }),
		Rollout:   join(in, func(h *Hooks) func(Rollout) { return h.Rollout }),
		Warmup:    join(in, func(h *Hooks) func(Warmup) { return h.Warmup }),
		Headroom:  join(in, func(h *Hooks) func(Headroom) { return h.Headroom }),
		SlowStart: join(in, func(h *Hooks) func(SlowStart) { return h.SlowStart }),
	}
}

// join combines the non-nil funcs that get picks from hs.
func join[E any](hs []*Hooks, get func(*Hooks) func(E)) func(E) {
	var fs []func(E)
	for _, h := range hs {
		if f := get(h); f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(e E) {
		for _, f := range fs {
			f(e)
		}
	}
}

// Outcome is what a decision said.
type Outcome uint8

const (
	// Allowed: the request may proceed.
	Allowed Outcome = iota + 1
	// Denied: the request was refused.
	Denied
	// Shadow: a shadow policy would have refused, and did not.
	Shadow
)

// String returns "allowed", "denied" or "shadow".
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	case Shadow:
		return "shadow"
	}
	return "unknown"
}

// Source says which part of herdcap made a decision. Its values and names
// are those of limiter.Via.
type Source uint8

const (
	// SourceLocal: an in-process token bucket.
	SourceLocal Source = iota + 1
	// SourceRedis: a Lua script on Redis, in one round trip.
	SourceRedis
	// SourceLease: tokens leased from Redis and spent in process.
	SourceLease
	// SourceFallback: Redis could not answer, the failure policy did.
	SourceFallback
)

// String returns "local", "redis", "lease" or "fallback".
func (s Source) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceRedis:
		return "redis"
	case SourceLease:
		return "lease"
	case SourceFallback:
		return "fallback"
	}
	return "unknown"
}

// Decision is one decision of a budget: never its key.
type Decision struct {
	// Policy is the budget's name (limiter.Config.Name).
	Policy string
	// Outcome is what the decision said.
	Outcome Outcome
	// Source is where it came from.
	Source Source
	// Tokens is the number of tokens taken (allowed) or wanted (denied).
	Tokens int
}

// BreakerState is a circuit breaker's state.
type BreakerState uint8

const (
	// BreakerClosed: calls reach Redis.
	BreakerClosed BreakerState = iota + 1
	// BreakerHalfOpen: one probe call may reach Redis.
	BreakerHalfOpen
	// BreakerOpen: no call reaches Redis.
	BreakerOpen
)

// String returns "closed", "half-open" or "open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// Breaker is a change of state of the circuit breaker in front of a
// component's Redis.
type Breaker struct {
	// Policy is the component's name: a budget's limiter.Config.Name, or
	// the Redis name of a component that has no other.
	Policy string
	// From and To are the states before and after.
	From, To BreakerState
}

// Fallback reports a Redis-backed budget entering or leaving its failure
// policy: Entered at its first decision by the policy after Redis
// answered, and left (Entered false) at the first answer from Redis after
// that.
type Fallback struct {
	// Policy is the budget's name.
	Policy string
	// Entered is true when the failure policy starts answering, false
	// when Redis answers again.
	Entered bool
}

// Lease is one completed lease exchange of a fleet.Leased budget: tokens
// taken from the shared bucket in Redis for this node.
type Lease struct {
	// Policy is the budget's name.
	Policy string
	// Tokens is the number of tokens the exchange granted (0: the shared
	// bucket had none to lease).
	Tokens int
	// Latency is the round trip, measured on the budget's clock.
	Latency time.Duration
}

// SlowStart is one decision of a slow-start gate (warmup/slowstart).
type SlowStart struct {
	// Policy is the gate's name.
	Policy string
	// Admitted reports whether the request may be served.
	Admitted bool
	// Reason says why: "warm" (full share), "ramp" (within the share),
	// "share" (shed: beyond the share) or "budget" (shed by the fleet's
	// budget), as slowstart.Reason's String.
	Reason string
	// Share is the share of traffic in force, from the gate's MinShare
	// to 1.
	Share float64
	// RetryAfter is, for a shed request, when it is told to come back.
	RetryAfter time.Duration
}

// Admission is one decision of an admission gate.
type Admission struct {
	// Policy is the gate's name.
	Policy string
	// Granted reports whether the client was let in.
	Granted bool
	// Wait is, for a refused client, how long until it is told to come
	// back (its slot, or its deferral); 0 when granted.
	Wait time.Duration
	// Ticket reports an admission on a valid ticket (no budget spent).
	Ticket bool
	// Source is where the decision came from.
	Source Source
}

// RolloutKind is what happened to a rollout.
type RolloutKind uint8

const (
	// RolloutStarted: a rollout was started.
	RolloutStarted RolloutKind = iota + 1
	// RolloutCohortReleased: one or more cohorts were released.
	RolloutCohortReleased
	// RolloutPaused: the rollout was paused (Reason says why).
	RolloutPaused
	// RolloutResumed: a paused rollout was resumed.
	RolloutResumed
	// RolloutAborted: the rollout was aborted (Reason says why).
	RolloutAborted
	// RolloutCompleted: every cohort was released.
	RolloutCompleted
)

// String returns "started", "cohort-released", "paused", "resumed",
// "aborted" or "completed".
func (k RolloutKind) String() string {
	switch k {
	case RolloutStarted:
		return "started"
	case RolloutCohortReleased:
		return "cohort-released"
	case RolloutPaused:
		return "paused"
	case RolloutResumed:
		return "resumed"
	case RolloutAborted:
		return "aborted"
	case RolloutCompleted:
		return "completed"
	}
	return "unknown"
}

// Rollout is an event of an invalidation rollout, reported by the node
// that caused it.
type Rollout struct {
	// Kind is what happened.
	Kind RolloutKind
	// ID is the rollout's ID.
	ID string
	// Released and Cohorts are the cohorts released so far, of the total.
	Released, Cohorts int
	// Reason is the reason given to pause or abort ("" otherwise).
	Reason string
}

// WarmupKind is what happened to a warm-up.
type WarmupKind uint8

const (
	// WarmupChunkDone: a chunk of keys was warmed.
	WarmupChunkDone WarmupKind = iota + 1
	// WarmupKeyFailed: fetching or writing one key failed.
	WarmupKeyFailed
	// WarmupPhase: the warm-up changed phase (Phase says to what).
	WarmupPhase
)

// String returns "chunk-done", "key-failed" or "phase".
func (k WarmupKind) String() string {
	switch k {
	case WarmupChunkDone:
		return "chunk-done"
	case WarmupKeyFailed:
		return "key-failed"
	case WarmupPhase:
		return "phase"
	}
	return "unknown"
}

// Warmup is an event of a warm-up, reported by the node that did the work.
type Warmup struct {
	// Kind is what happened.
	Kind WarmupKind
	// ID is the warm-up's ID.
	ID string
	// Keys is the number of keys the event covers: warmed in the chunk,
	// or 1 for a failed key.
	Keys int
	// Phase is the warm-up's phase after the event (its String form:
	// "running", "paused", "done"...).
	Phase string
	// Reason is the reason given for a pause or an abort, or the error of
	// a failed key ("" otherwise); never the key itself.
	Reason string
}

// Headroom is the shared limit of an origin after a change.
type Headroom struct {
	// Origin is the origin's name.
	Origin string
	// Limit is the origin's limit, in calls per second.
	Limit float64
	// Spare is the part of Limit not in use, in calls per second.
	Spare float64
	// Saturated reports that the origin showed overload at this limit.
	Saturated bool
}
