package limiter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of the backoff options.
const (
	// DefaultHintJitter is the default jitter added to a server's hint, as
	// a fraction of the hint.
	DefaultHintJitter = 0.1
	// DefaultHintJitterMax caps the jitter added to a hint by default.
	DefaultHintJitterMax = time.Second
	// DefaultSlotJitter is the default window of the jitter added to an
	// exact slot (DelaySlot).
	DefaultSlotJitter = 5 * time.Millisecond
)

// Backoff tells a client how long to wait before its next attempt, on the
// client side of a reconnect storm.
//
// Without a hint from the server, the wait is exponential backoff with full
// jitter: uniform in [0, min(cap, base·2^attempt)). The randomness spreads a
// herd of clients that failed together over the whole window, so its retries
// are flat on average instead of synchronized, at every attempt; its mean
// is half the window.
//
// With a hint the hint wins, as in gRPC's retry policy: the wait is the
// hint plus a jitter, never less than the hint (an admission slot is not
// open earlier) and never much more (a slot is held only for its grace).
// How much jitter depends on what the hint is:
//
//   - a coarse hint (DelayHint), such as an HTTP Retry-After in whole
//     seconds, which many clients may be told alike: the jitter is uniform
//     in [0, min(frac·hint, max)) (WithHintJitter, default 10% up to one
//     second), so that clients told the same instant do not come back in
//     lockstep;
//   - an exact slot (DelaySlot), such as an AdmitDecision's RetryAfter
//     as the herdcap transports carry it (gRPC pushback, httpmw's
//     millisecond field): the server has already spread the slots at
//     exactly its rate, jitter included, so the client comes back at its
//     slot plus only a jitter uniform in [0, max) (WithSlotJitter, default
//     DefaultSlotJitter). Each return is late by less than max, so a
//     window of returns holds at most the slots of a window max longer:
//     at 500 slots a second and 5 ms, two or three more than the rate. A
//     proportional jitter would instead smear late slots by up to a
//     second and put the busiest one-second windows some 5 to 10% over
//     the rate.
//
// A Backoff holds no per-client state: the caller counts attempts. It is
// safe for concurrent use (an injected *rand.Rand is used under a mutex).
type Backoff struct {
	base, cap time.Duration
	hintFrac  float64
	hintMax   time.Duration
	slotMax   time.Duration

	mu  sync.Mutex
	rng *rand.Rand // nil: math/rand/v2's global source
}

// BackoffOption configures NewBackoff.
type BackoffOption struct {
	name  string
	apply func(b *Backoff) error
}

// WithBackoffRand makes the Backoff draw from r instead of math/rand/v2's
// global source, e.g. a seeded rand.New(rand.NewPCG(1, 2)) for a
// deterministic simulation. r is used under the Backoff's mutex.
func WithBackoffRand(r *rand.Rand) BackoffOption {
	return BackoffOption{"WithBackoffRand", func(b *Backoff) error {
		if r == nil {
			return fmt.Errorf("rand is nil")
		}
		b.rng = r
		return nil
	}}
}

// WithHintJitter sets the jitter added to a server's hint: uniform in
// [0, min(frac·hint, max)). frac must be in [0, 1] and max >= 0 (zero for
// either adds no jitter). Defaults DefaultHintJitter and
// DefaultHintJitterMax.
func WithHintJitter(frac float64, max time.Duration) BackoffOption {
	return BackoffOption{"WithHintJitter", func(b *Backoff) error {
		if math.IsNaN(frac) || frac < 0 || frac > 1 {
			return fmt.Errorf("frac must be in [0, 1], got %v", frac)
		}
		if max < 0 {
			return fmt.Errorf("max must be >= 0, got %v", max)
		}
		b.hintFrac, b.hintMax = frac, max
		return nil
	}}
}

// WithSlotJitter sets the window of the jitter added to an exact slot
// (DelaySlot): uniform in [0, max). max must be >= 0 (zero comes back
// exactly at the slot). Default DefaultSlotJitter. A return is late by
// less than max, so any window of returns holds at most rate × max more
// than the rate of slots allows: keep max small against the window whose
// flatness matters, and well under the server's slot grace.
func WithSlotJitter(max time.Duration) BackoffOption {
	return BackoffOption{"WithSlotJitter", func(b *Backoff) error {
		if max < 0 {
			return fmt.Errorf("max must be >= 0, got %v", max)
		}
		b.slotMax = max
		return nil
	}}
}

// NewBackoff returns a Backoff whose window starts at base and doubles with
// every attempt up to cap. base must be > 0 and cap >= base; the error wraps
// ErrInvalidOption and names the field.
func NewBackoff(base, cap time.Duration, opts ...BackoffOption) (*Backoff, error) {
	if base <= 0 {
		return nil, fmt.Errorf("%w: backoff base must be > 0, got %v", ErrInvalidOption, base)
	}
	if cap < base {
		return nil, fmt.Errorf("%w: backoff cap (%v) must be >= base (%v)", ErrInvalidOption, cap, base)
	}
	b := &Backoff{base: base, cap: cap, hintFrac: DefaultHintJitter, hintMax: DefaultHintJitterMax,
		slotMax: DefaultSlotJitter}
	for _, o := range opts {
		if o.apply == nil {
			return nil, fmt.Errorf("%w: zero BackoffOption value", ErrInvalidOption)
		}
		if err := o.apply(b); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidOption, o.name, err)
		}
	}
	return b, nil
}

// Window returns the full-jitter window of attempt (counted from 0):
// min(cap, base·2^attempt). A negative attempt counts as 0.
func (b *Backoff) Window(attempt int) time.Duration {
	attempt = max(attempt, 0)
	if attempt >= 62 || b.base > b.cap>>attempt {
		return b.cap
	}
	return b.base << attempt
}

// Delay returns the wait before retry number attempt (0 for the first
// retry): uniform in [0, Window(attempt)).
func (b *Backoff) Delay(attempt int) time.Duration {
	return time.Duration(b.float() * float64(b.Window(attempt)))
}

// DelayHint returns the wait before retry number attempt when the server
// sent a coarse hint (hint <= 0 means none, and gives Delay(attempt)): hint
// plus a jitter in [0, min(frac·hint, max)). It is never less than hint.
// For a hint that is an exact, server-spread slot, use DelaySlot.
func (b *Backoff) DelayHint(attempt int, hint time.Duration) time.Duration {
	if hint <= 0 {
		return b.Delay(attempt)
	}
	return b.after(hint, min(time.Duration(b.hintFrac*float64(hint)), b.hintMax))
}

// DelaySlot returns the wait before retry number attempt when the server
// booked the client an exact slot, slot from now (slot <= 0 means none, and
// gives Delay(attempt)): slot plus a jitter in [0, WithSlotJitter's max).
// It is never less than slot. The server's slots are already spread at its
// rate, so the small jitter keeps the returns as flat as the slots.
func (b *Backoff) DelaySlot(attempt int, slot time.Duration) time.Duration {
	if slot <= 0 {
		return b.Delay(attempt)
	}
	return b.after(slot, b.slotMax)
}

// after returns hint plus a jitter uniform in [0, j), saturating at the
// largest Duration.
func (b *Backoff) after(hint, j time.Duration) time.Duration {
	d := hint + time.Duration(b.float()*float64(j))
	if d < hint { // overflow
		return math.MaxInt64
	}
	return d
}

// float returns a uniform number in [0, 1).
func (b *Backoff) float() float64 {
	if b.rng == nil {
		return rand.Float64()
	}
	b.mu.Lock()
	f := b.rng.Float64()
	b.mu.Unlock()
	return f
}
