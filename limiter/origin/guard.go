package origin

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// ErrRefused is wrapped by every refusal of a Guard (a *RefusedError).
var ErrRefused = errors.New("origin: refused")

// RefusedError is a Guard's refusal: the origin's budget (or its
// concurrency cap) has no room within the wait the caller can afford.
// RetryAfter is when to come back (at least 1 ms).
type RefusedError struct {
	// Origin is the guard's Config.Name.
	Origin string
	// RetryAfter is how long the caller should wait before trying again.
	RetryAfter time.Duration
	// Reason says why.
	Reason Reason
}

// Reason says why a Guard refused a call.
type Reason uint8

const (
	// ReasonBudget: no token of the budget within the wait the caller can
	// afford.
	ReasonBudget Reason = iota + 1
	// ReasonConcurrency: Config.MaxConcurrent calls are in flight.
	ReasonConcurrency
	// ReasonDeadline: the caller's deadline leaves less than
	// Config.MinCallTime for the call.
	ReasonDeadline
)

// String returns the reason's name: "budget", "concurrency" or
// "deadline".
func (r Reason) String() string {
	switch r {
	case ReasonBudget:
		return "budget"
	case ReasonConcurrency:
		return "concurrency"
	case ReasonDeadline:
		return "deadline"
	}
	return "none"
}

// Error describes the refusal.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("origin: %s refused (%s); retry after %v", e.Origin, e.Reason, e.RetryAfter)
}

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Outcome classifies one call to the origin.
type Outcome uint8

const (
	// Success: the origin answered.
	Success Outcome = iota
	// Overload: the origin said it is overloaded (a 503, a 429,
	// RESOURCE_EXHAUSTED, a full queue).
	Overload
	// Timeout: the call ran out of time.
	Timeout
	// Failure: any other error.
	Failure
	// Canceled: the caller gave up (context.Canceled): it says nothing
	// about the origin, and a controller of its headroom should not read
	// it as a failure.
	Canceled
	// Refused: a call the guard refused, for its budget or its
	// concurrency cap; it never reached the origin (unserved demand). The
	// guard reports it to Config.Headroom; a classifier's or a
	// RecordOutcome's Refused is read as Failure, since that call did
	// reach the origin.
	Refused
)

// outcomes is the number of Outcomes.
const outcomes = int(Refused) + 1

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Overload:
		return "overload"
	case Timeout:
		return "timeout"
	case Failure:
		return "failure"
	case Canceled:
		return "canceled"
	case Refused:
		return "refused"
	}
	return "unknown"
}

// ErrOverload can be returned (or wrapped) by a call to say that the
// origin is overloaded; the default classifier counts it as Overload.
var ErrOverload = errors.New("origin: overloaded")

// DefaultClassify is the classifier a Guard uses when Config.Classify is
// nil: nil is Success; an error wrapping ErrOverload is Overload; one
// wrapping context.DeadlineExceeded is Timeout; one wrapping
// context.Canceled is Canceled; anything else is Failure.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrOverload):
		return Overload
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	case errors.Is(err, context.Canceled):
		return Canceled
	}
	return Failure
}

// Config configures a Guard. Budget and Name are required; every other
// zero field takes its default.
type Config struct {
	// Budget is where the origin's tokens come from: one token per call,
	// under the key Name (and, for the Background lane with a Headroom,
	// also under Name + "/background"; see Lane). Required.
	Budget limiter.Budget
	// Name names the origin: the budget key, and the origin in refusals.
	// Required.
	Name string
	// MaxWait is the longest a Foreground call is held for its token. If
	// MaxWait is 0, 1 s; NoWait never holds a call (a call goes at once or
	// is refused); any other negative value is invalid. The hold is
	// further capped by the caller's deadline (see MinCallTime). A
	// Background call is never held.
	MaxWait time.Duration
	// MinCallTime is the time a call keeps for itself before its caller's
	// deadline: a call is held at most until MinCallTime before the
	// deadline, refused when it cannot get its token by then, and refused
	// at once (ReasonDeadline) when less than MinCallTime is left. Set it
	// to what a call to the origin takes (its typical latency). If
	// MinCallTime is 0, 10 ms; it must not be negative.
	MinCallTime time.Duration
	// MaxConcurrent caps the calls in flight through the guard (held calls
	// included, both lanes); a call beyond it is refused at once. 0 means
	// no cap; it must not be negative.
	MaxConcurrent int
	// Classify tells a call's outcome from its error. Nil means
	// DefaultClassify. It is called outside the guard's locks; if it
	// panics, the call is counted as a Failure (and in
	// Stats.ClassifyPanics) and the panic is dropped. A Refused (or
	// unknown) outcome from it is read as Failure.
	Classify func(error) Outcome
	// Headroom, when set, is the origin's adaptive limit: every budget
	// request of the guard carries Limit: Headroom.Limit(), the Background
	// lane takes only Headroom.Spare() (see Lane), and every call and
	// every refusal for the budget or the concurrency cap is reported to
	// Headroom.Record. Configure the Budget with limiter.NoRamp
	// (limiter.Config.Ramp, or the fleet budgets' equivalent): the
	// headroom's controller already bounds how fast its limit moves, and
	// a budget's ramp on top would only lag behind it. Nil means a fixed
	// budget: the budget's own limit. Its methods are called outside the
	// guard's locks (it has none on its hot path).
	Headroom Headroom
	// Clock is the source of time and timers. Nil means the system clock.
	Clock limiter.Clock
	// Observe receives the guard's decisions (observe.Decision, one per
	// Reserve or Do, named Name, or Name + "/background" in the
	// Background lane; a refusal not made by the budget, for the deadline
	// or the concurrency cap, has Source local), read once by New. Nil:
	// none.
	Observe *observe.Hooks
}

// NoWait is the Config.MaxWait that never holds a call.
const NoWait time.Duration = -1

// defaults of the Config fields.
const (
	defaultMaxWait     = time.Second
	defaultMinCallTime = 10 * time.Millisecond
	// refusalFloor is the least RetryAfter of a refusal.
	refusalFloor = time.Millisecond
	// concurrencyRetry is a concurrency refusal's RetryAfter before any
	// call has finished (afterwards, the mean latency of recent calls).
	concurrencyRetry = 100 * time.Millisecond
)

// Guard guards the calls to one origin. It is safe for concurrent use;
// its decisions and records take no lock.
type Guard struct {
	budget   limiter.Budget
	name     string
	bgKey    string // name + "/background"
	maxWait  time.Duration
	minCall  time.Duration
	cap      int64
	classify func(error) Outcome
	headroom Headroom
	clock    limiter.Clock
	onDec    func(observe.Decision) // Config.Observe.Decision; nil: none

	inFlight atomic.Int64
	refusals atomic.Uint64 // refusals told a spread wait, to spread them
	c        counters
}

// Stats counts a Guard's calls since it was made.
type Stats struct {
	// Calls counts calls that reached the origin; Outcomes counts them by
	// Outcome (indexed by it), and Outcomes[Refused] counts the refusals
	// reported to Config.Headroom as Refused (for the budget or the
	// concurrency cap), which are not calls.
	Calls    int64
	Outcomes [Refused + 1]int64
	// LaneCalls and LaneRefused count calls that reached the origin and
	// refusals (for any reason) by Lane (indexed by it).
	LaneCalls, LaneRefused [Background + 1]int64
	// Held counts calls held for their token, HeldTime the time they were
	// held in all.
	Held     int64
	HeldTime time.Duration
	// Refused counts refusals: for the budget, for the concurrency cap, and
	// for a deadline too close.
	RefusedBudget, RefusedConcurrency, RefusedDeadline int64
	// ClassifyPanics counts the calls whose Config.Classify panicked (each
	// counted as a Failure).
	ClassifyPanics int64
	// Latency is the total time of the calls that reached the origin
	// (holds excluded); MeanLatency is the recent mean (an exponentially
	// weighted moving average over about the last 20 calls).
	Latency, MeanLatency time.Duration
}

// New returns a Guard. A bad Config is an error wrapping
// limiter.ErrInvalidConfig that names the field.
func New(cfg Config) (*Guard, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: origin.Config.%s", limiter.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Budget == nil:
		return nil, bad("Budget is nil")
	case cfg.Name == "":
		return nil, bad("Name is empty")
	case cfg.MaxWait < 0 && cfg.MaxWait != NoWait:
		return nil, bad("MaxWait must be >= 0 or NoWait, got %v", cfg.MaxWait)
	case cfg.MinCallTime < 0:
		return nil, bad("MinCallTime must be >= 0, got %v", cfg.MinCallTime)
	case cfg.MaxConcurrent < 0:
		return nil, bad("MaxConcurrent must be >= 0, got %d", cfg.MaxConcurrent)
	}
	g := &Guard{
		budget:   cfg.Budget,
		name:     cfg.Name,
		bgKey:    cfg.Name + backgroundSuffix,
		maxWait:  or(cfg.MaxWait, defaultMaxWait),
		minCall:  or(cfg.MinCallTime, defaultMinCallTime),
		cap:      int64(cfg.MaxConcurrent),
		classify: cfg.Classify,
		headroom: cfg.Headroom,
		clock:    sysclock.Or(cfg.Clock),
	}
	if g.classify == nil {
		g.classify = DefaultClassify
	}
	if cfg.Observe != nil {
		g.onDec = cfg.Observe.Decision
	}
	return g, nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Hold is a Guard's decision on one call (Reserve). Allowed: send the
// call after Wait (0: now), then end the Hold with exactly one Record,
// RecordOutcome or Cancel. Refused: come back after RetryAfter (at least
// 1 ms), for Reason.
type Hold struct {
	// Allowed reports whether the call may go (after Wait).
	Allowed bool
	// Wait is how long to hold an allowed call before sending it (always
	// 0 in the Background lane).
	Wait time.Duration
	// RetryAfter is when a refused caller should come back.
	RetryAfter time.Duration
	// Reason says why a call was refused.
	Reason Reason
	// Via says which part of the budget decided.
	Via  limiter.Via
	lane Lane
	g    *Guard
}

// Err returns nil for an allowed Hold (or the zero Hold), and the
// *RefusedError of a refused one.
func (h Hold) Err() error {
	if h.Allowed || h.g == nil {
		return nil
	}
	return &RefusedError{Origin: h.g.name, RetryAfter: h.RetryAfter, Reason: h.Reason}
}

// Reserve decides one call in lane without waiting, for a caller whose
// deadline is deadline (the zero time: none), and allocates nothing: a
// Hold that is allowed (send the call after its Wait, then Record the
// outcome) or refused (with when to come back). See Lane for how each
// lane takes its token; a lane out of range is taken for Background. An
// error is the budget's (the call may then go on unguarded or fail, as
// the caller's failure policy says: a closed budget's limiter.ErrClosed, a
// fail-closed store's limiter.ErrUnavailable, or a Headroom limit the
// budget rejects).
//
// An allowed Hold must be ended exactly once (Record, RecordOutcome or
// Cancel): with Config.MaxConcurrent, ending one twice frees a slot that
// is still taken.
func (g *Guard) Reserve(ctx context.Context, deadline time.Time, lane Lane) (Hold, error) {
	if lane != Foreground {
		lane = Background
	}
	maxWait := g.maxWait
	if !deadline.IsZero() {
		left := deadline.Sub(g.clock.Now()) - g.minCall
		if left < 0 {
			h := g.refuse(lane, ReasonDeadline, refusalFloor)
			if g.onDec != nil {
				g.observed(lane, h)
			}
			return h, nil
		}
		maxWait = min(maxWait, left)
	}
	if g.cap > 0 {
		if g.inFlight.Add(1) > g.cap {
			g.inFlight.Add(-1)
			h := g.refuse(lane, ReasonConcurrency, g.spread(g.c.meanLatency(concurrencyRetry)))
			if g.onDec != nil {
				g.observed(lane, h)
			}
			return h, nil
		}
	}
	var h Hold
	var err error
	if lane == Foreground {
		h, err = g.foreground(ctx, maxWait)
	} else {
		h, err = g.background(ctx)
	}
	if (err != nil || !h.Allowed) && g.cap > 0 {
		g.inFlight.Add(-1)
	}
	if g.onDec != nil && err == nil {
		g.observed(lane, h)
	}
	return h, err
}

// observed reports h, a decision in lane, to the Decision hook.
func (g *Guard) observed(lane Lane, h Hold) {
	e := observe.Decision{Policy: g.name, Outcome: observe.Denied, Source: observe.Source(h.Via), Tokens: 1}
	if lane == Background {
		e.Policy = g.bgKey
	}
	if h.Allowed {
		e.Outcome = observe.Allowed
	}
	if e.Source == 0 {
		e.Source = observe.SourceLocal
	}
	g.onDec(e)
}

// foreground books the call's token of the main key, held up to maxWait.
func (g *Guard) foreground(ctx context.Context, maxWait time.Duration) (Hold, error) {
	req := limiter.Request{Key: g.name, N: 1}
	if maxWait > 0 {
		req.Wait = maxWait
	}
	if g.headroom != nil {
		req.Limit = g.headroom.Limit()
	}
	d, err := g.budget.Take(ctx, req)
	if err != nil {
		return Hold{g: g}, err
	}
	if !d.Allowed {
		return g.budgetRefusal(Foreground, d, d.RetryAfter), nil
	}
	if d.RetryAfter > 0 {
		g.c.held.Add(1)
		g.c.heldTime.Add(int64(d.RetryAfter))
	}
	return Hold{Allowed: true, Wait: d.RetryAfter, Via: d.Via, g: g}, nil
}

// refuse counts a refusal in lane for reason and returns its Hold, telling
// Config.Headroom of refusals for the budget or the concurrency cap.
func (g *Guard) refuse(lane Lane, reason Reason, after time.Duration) Hold {
	switch reason {
	case ReasonBudget:
		g.c.refusedBudget.Add(1)
	case ReasonConcurrency:
		g.c.refusedConcurrency.Add(1)
	case ReasonDeadline:
		g.c.refusedDeadline.Add(1)
	}
	g.c.laneRefused[lane].Add(1)
	if reason != ReasonDeadline {
		g.c.outcomes[Refused].Add(1)
		if g.headroom != nil {
			g.headroom.Record(lane, 0, Refused)
		}
	}
	return Hold{RetryAfter: max(after, refusalFloor), Reason: reason, lane: lane, g: g}
}

// budgetRefusal counts a refusal in lane for the budget, whose decision
// was d, and returns its Hold, told after.
func (g *Guard) budgetRefusal(lane Lane, d limiter.Decision, after time.Duration) Hold {
	h := g.refuse(lane, ReasonBudget, after)
	h.Via = d.Via
	return h
}

// spread returns a wait in [base, 2 × base), the next of a golden-ratio
// sequence of the guard's refusals: it spreads successive refusals evenly
// over the window whatever their number, so that callers refused together
// do not come back together.
func (g *Guard) spread(base time.Duration) time.Duration {
	n := g.refusals.Add(1)
	frac := float64(n*0x9E3779B97F4A7C15>>11) / (1 << 53)
	return time.Duration(float64(base) * (1 + frac))
}

// Record ends an allowed h with the outcome of its call: the call's error
// (classified by Config.Classify) and its latency, holds excluded. On a
// refused Hold it does nothing.
func (h Hold) Record(err error, latency time.Duration) {
	if !h.Allowed {
		return
	}
	h.g.record(h.lane, h.g.classifyErr(err), latency)
}

// RecordOutcome ends h with an outcome already classified and the call's
// latency.
func (h Hold) RecordOutcome(o Outcome, latency time.Duration) {
	if !h.Allowed {
		return
	}
	h.g.record(h.lane, o, latency)
}

// Cancel ends h without a call (its caller gave up while it was held):
// nothing is counted or reported, and the booked token is spent.
func (h Hold) Cancel() {
	if h.Allowed && h.g.cap > 0 {
		h.g.inFlight.Add(-1)
	}
}

// classifyErr is Config.Classify of err, Failure if it panics.
func (g *Guard) classifyErr(err error) (o Outcome) {
	defer func() {
		if recover() != nil {
			g.c.classifyPanics.Add(1)
			o = Failure
		}
	}()
	return g.classify(err)
}

func (g *Guard) record(lane Lane, o Outcome, latency time.Duration) {
	if o >= Refused {
		o = Failure
	}
	if g.cap > 0 {
		g.inFlight.Add(-1)
	}
	g.c.add(lane, o, latency)
	if g.headroom != nil {
		g.headroom.Record(lane, latency, o)
	}
}

// Do calls call through the guard in lane: it takes a token (see Lane;
// a Foreground call is held until its token is due, within MaxWait and
// the context's deadline, see Config.MinCallTime), calls call with ctx,
// and records the outcome. It returns call's error; a *RefusedError when
// refused; the context's error when it ends during the hold (the call is
// not made); or the budget's error (see Reserve). call runs on the
// caller's goroutine, outside the guard's locks; if it panics, the call is
// recorded as a Failure and the panic goes on.
func (g *Guard) Do(ctx context.Context, lane Lane, call func(context.Context) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline()
	h, err := g.Reserve(ctx, dl, lane)
	if err != nil {
		return err
	}
	if !h.Allowed {
		return h.Err()
	}
	if h.Wait > 0 {
		if err := g.sleep(ctx, h.Wait); err != nil {
			h.Cancel()
			return err
		}
	}
	start := g.clock.Now()
	done := false
	defer func() {
		if !done {
			h.RecordOutcome(Failure, g.clock.Now().Sub(start))
		}
	}()
	err = call(ctx)
	done = true
	h.Record(err, g.clock.Now().Sub(start))
	return err
}

// sleep waits d on the guard's clock, or until ctx is done.
func (g *Guard) sleep(ctx context.Context, d time.Duration) error {
	return sysclock.Sleep(ctx, g.clock, d)
}

// Stats returns the guard's counts so far. Each count is read atomically,
// but not all at one instant: under concurrent calls they may disagree
// by the calls under way.
func (g *Guard) Stats() Stats { return g.c.stats() }

// Name returns the origin's name (Config.Name).
func (g *Guard) Name() string { return g.name }
