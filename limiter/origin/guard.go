package origin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
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
	// Reason is "budget" (no token within the wait) or "concurrency"
	// (Config.MaxConcurrent calls in flight).
	Reason string
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
)

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
	}
	return "unknown"
}

// ErrOverload can be returned (or wrapped) by a call to say that the
// origin is overloaded; the default classifier counts it as Overload.
var ErrOverload = errors.New("origin: overloaded")

// DefaultClassify is the classifier a Guard uses when Config.Classify is
// nil: nil is Success; an error wrapping ErrOverload is Overload; one
// wrapping context.DeadlineExceeded is Timeout; anything else is Failure.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrOverload):
		return Overload
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	}
	return Failure
}

// Config configures a Guard. Budget and Name are required; every other
// zero field takes its default.
type Config struct {
	// Budget is where the origin's tokens come from: one token per call,
	// under the key Name. Required.
	Budget limiter.Budget
	// Name names the origin: the budget key, and the origin in refusals.
	// Required.
	Name string
	// MaxWait is the longest a call is held for its token. If MaxWait is
	// 0, 1 s; it must not be negative. The hold is further capped by the
	// caller's deadline (see MinCallTime).
	MaxWait time.Duration
	// MinCallTime is the time a held call keeps for itself before its
	// context's deadline: a call is held at most until MinCallTime before
	// the deadline, and refused when it cannot get its token by then. If
	// MinCallTime is 0, 10 ms; it must not be negative.
	MinCallTime time.Duration
	// MaxConcurrent caps the calls in flight through the guard (held calls
	// included); a call beyond it is refused at once. 0 means no cap; it
	// must not be negative.
	MaxConcurrent int
	// Classify tells a call's outcome from its error. Nil means
	// DefaultClassify. It is called outside the guard's locks.
	Classify func(error) Outcome
	// Clock is the source of time and timers. Nil means the system clock.
	Clock limiter.Clock
}

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

// Guard guards the calls to one origin. It is safe for concurrent use.
type Guard struct {
	budget   limiter.Budget
	name     string
	maxWait  time.Duration
	minCall  time.Duration
	cap      int64
	classify func(error) Outcome
	clock    limiter.Clock

	inFlight atomic.Int64

	mu    sync.Mutex
	stats Stats
	ewma  float64 // mean latency of recent calls, ns; 0 before the first
}

// Stats counts a Guard's calls since it was made.
type Stats struct {
	// Calls counts calls that reached the origin; Outcomes counts them by
	// Outcome (indexed by it).
	Calls    int64
	Outcomes [4]int64
	// Held counts calls held for their token, HeldTime the time they were
	// held in all.
	Held     int64
	HeldTime time.Duration
	// Refused counts refusals: for the budget and for the concurrency cap.
	RefusedBudget, RefusedConcurrency int64
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
	case cfg.MaxWait < 0:
		return nil, bad("MaxWait must be >= 0, got %v", cfg.MaxWait)
	case cfg.MinCallTime < 0:
		return nil, bad("MinCallTime must be >= 0, got %v", cfg.MinCallTime)
	case cfg.MaxConcurrent < 0:
		return nil, bad("MaxConcurrent must be >= 0, got %d", cfg.MaxConcurrent)
	}
	g := &Guard{
		budget:   cfg.Budget,
		name:     cfg.Name,
		maxWait:  or(cfg.MaxWait, defaultMaxWait),
		minCall:  or(cfg.MinCallTime, defaultMinCallTime),
		cap:      int64(cfg.MaxConcurrent),
		classify: cfg.Classify,
		clock:    sysclock.Or(cfg.Clock),
	}
	if g.classify == nil {
		g.classify = DefaultClassify
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
	// Wait is how long to hold an allowed call before sending it.
	Wait time.Duration
	// RetryAfter is when a refused caller should come back.
	RetryAfter time.Duration
	// Reason says why a call was refused: "budget" (no token within the
	// wait) or "concurrency" (Config.MaxConcurrent calls in flight).
	Reason string
	// Via says which part of the budget decided.
	Via limiter.Via
	g   *Guard
}

// Err returns nil for an allowed Hold, and the *RefusedError of a refused
// one.
func (h Hold) Err() error {
	if h.Allowed {
		return nil
	}
	return &RefusedError{Origin: h.g.name, RetryAfter: h.RetryAfter, Reason: h.Reason}
}

// Reserve decides one call without waiting, for a caller with remaining
// time left before its deadline (0 or less: no deadline), and allocates
// nothing: a Hold that is allowed (send the call after its Wait, then
// Record the outcome) or refused (with when to come back). An error is
// the budget's (the call may then go on unguarded or fail, as the
// caller's failure policy says: a closed budget's limiter.ErrClosed, a
// fail-closed store's limiter.ErrUnavailable).
func (g *Guard) Reserve(ctx context.Context, remaining time.Duration) (Hold, error) {
	if g.cap > 0 {
		if g.inFlight.Add(1) > g.cap {
			g.inFlight.Add(-1)
			return g.refuse("concurrency", g.concurrencyRetry()), nil
		}
	}
	maxWait := g.maxWait
	if remaining > 0 {
		maxWait = min(maxWait, remaining-g.minCall)
	}
	req := limiter.Request{Key: g.name, N: 1}
	if maxWait > 0 {
		req.Wait = maxWait
	}
	d, err := g.budget.Take(ctx, req)
	if err != nil || !d.Allowed {
		if g.cap > 0 {
			g.inFlight.Add(-1)
		}
		if err != nil {
			return Hold{g: g}, err
		}
		h := g.refuse("budget", d.RetryAfter)
		h.Via = d.Via
		return h, nil
	}
	if d.RetryAfter > 0 {
		g.mu.Lock()
		g.stats.Held++
		g.stats.HeldTime += d.RetryAfter
		g.mu.Unlock()
	}
	return Hold{Allowed: true, Wait: d.RetryAfter, Via: d.Via, g: g}, nil
}

func (g *Guard) refuse(reason string, after time.Duration) Hold {
	g.mu.Lock()
	if reason == "budget" {
		g.stats.RefusedBudget++
	} else {
		g.stats.RefusedConcurrency++
	}
	g.mu.Unlock()
	return Hold{RetryAfter: max(after, refusalFloor), Reason: reason, g: g}
}

func (g *Guard) concurrencyRetry() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ewma == 0 {
		return concurrencyRetry
	}
	return time.Duration(g.ewma)
}

// Record ends an allowed h with the outcome of its call: the call's error
// (classified by Config.Classify) and its latency, holds excluded. On a
// refused Hold it does nothing.
func (h Hold) Record(err error, latency time.Duration) {
	if !h.Allowed {
		return
	}
	h.g.record(h.g.classify(err), latency)
}

// RecordOutcome ends h with an outcome already classified and the call's
// latency.
func (h Hold) RecordOutcome(o Outcome, latency time.Duration) {
	if !h.Allowed {
		return
	}
	h.g.record(o, latency)
}

// Cancel ends h without a call (its caller gave up while it was held):
// nothing is counted, and the booked token is spent.
func (h Hold) Cancel() {
	if h.Allowed && h.g.cap > 0 {
		h.g.inFlight.Add(-1)
	}
}

func (g *Guard) record(o Outcome, latency time.Duration) {
	if o > Failure {
		o = Failure
	}
	if g.cap > 0 {
		g.inFlight.Add(-1)
	}
	g.mu.Lock()
	g.stats.Calls++
	g.stats.Outcomes[o]++
	g.stats.Latency += latency
	if g.ewma == 0 {
		g.ewma = float64(latency)
	} else {
		g.ewma += (float64(latency) - g.ewma) / 20
	}
	g.mu.Unlock()
}

// Do calls call through the guard: it books a token, holds the call until
// the token is due (within MaxWait and the context's deadline, see
// Config.MinCallTime), calls call with ctx, and records the outcome. It
// returns call's error; a *RefusedError when refused; the context's error
// when it ends during the hold (the call is not made); or the budget's
// error (see Reserve). call runs on the caller's goroutine, outside the
// guard's locks.
func (g *Guard) Do(ctx context.Context, call func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var remaining time.Duration
	if dl, ok := ctx.Deadline(); ok {
		remaining = dl.Sub(g.clock.Now())
		if remaining <= 0 {
			return context.DeadlineExceeded
		}
	}
	h, err := g.Reserve(ctx, remaining)
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
	err = call(ctx)
	h.Record(err, g.clock.Now().Sub(start))
	return err
}

// sleep waits d on the guard's clock, or until ctx is done.
func (g *Guard) sleep(ctx context.Context, d time.Duration) error {
	woke := make(chan struct{})
	t := g.clock.AfterFunc(d, func() { close(woke) })
	select {
	case <-woke:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}

// Stats returns the guard's counts so far.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.MeanLatency = time.Duration(g.ewma)
	return s
}

// Name returns the origin's name (Config.Name).
func (g *Guard) Name() string { return g.name }
