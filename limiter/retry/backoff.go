package retry

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// ErrInvalidConfig is wrapped by the errors of Backoff.Validate,
// Policy.Validate and NewBudget; the message names the field.
var ErrInvalidConfig = errors.New("retry: invalid config")

// NoJitter, given as Backoff.HintJitter, Backoff.HintJitterMax or
// Backoff.SlotJitter, turns that jitter off (zero means the default).
const NoJitter = -1

// The defaults of the Backoff fields.
const (
	defaultBase          = 100 * time.Millisecond
	defaultCap           = 10 * time.Second
	defaultHintJitter    = 0.1
	defaultHintJitterMax = time.Second
	defaultSlotJitter    = 5 * time.Millisecond
)

// Backoff tells a client how long to wait before its next attempt: full
// jitter without a hint (Delay), the hint plus a jitter with one
// (DelayHint for a coarse hint, DelaySlot for an exact slot). The package
// doc explains the model.
//
// Backoff is a value type: the zero value is the default backoff, and
// every zero field takes its default. It holds no per-client state (the
// caller counts attempts) and no lock: its methods are safe for
// concurrent use when Rand is (the default is). Validate reports a field
// out of range; the methods of an invalid Backoff clamp each field into
// its range.
type Backoff struct {
	// Base is the first retry's whole full-jitter window; each later
	// attempt doubles it, up to Cap. If Base is 0, 100 ms. Must be >= 0.
	Base time.Duration
	// Cap is the largest window. If Cap is 0, 10 s (or Base, if larger).
	// Must be 0 or >= Base.
	Cap time.Duration
	// HintJitter is the jitter added to a coarse hint, as a fraction of
	// the hint: in [0, 1], or NoJitter. If HintJitter is 0, 0.1.
	HintJitter float64
	// HintJitterMax caps the jitter added to a coarse hint. If
	// HintJitterMax is 0, 1 s. Must be >= 0, or NoJitter.
	HintJitterMax time.Duration
	// SlotJitter is the window of the jitter added to an exact slot. Keep
	// it small against the window whose flatness matters, and well under
	// the server's slot grace. If SlotJitter is 0, 5 ms. Must be >= 0, or
	// NoJitter (the client comes back exactly at its slot).
	SlotJitter time.Duration
	// Rand returns a uniform number in [0, 1): a seeded
	// rand.New(rand.NewPCG(1, 2)).Float64 makes the delays deterministic.
	// It must be safe for concurrent use when the Backoff is used
	// concurrently. If Rand is nil, math/rand/v2's Float64.
	Rand func() float64
}

// Validate reports the first field of b out of range, in an error wrapping
// ErrInvalidConfig that names it (e.g. "Backoff.Base must be >= 0, got
// -1s").
func (b Backoff) Validate() error { return b.check("Backoff") }

// check is Validate with the fields named under path.
func (b Backoff) check(path string) error {
	switch {
	case b.Base < 0:
		return fmt.Errorf("%w: %s.Base must be >= 0, got %v", ErrInvalidConfig, path, b.Base)
	case b.Cap < 0:
		return fmt.Errorf("%w: %s.Cap must be >= 0, got %v", ErrInvalidConfig, path, b.Cap)
	case b.Cap > 0 && b.Cap < b.base():
		return fmt.Errorf("%w: %s.Cap (%v) must be >= %s.Base (%v)", ErrInvalidConfig, path, b.Cap, path, b.base())
	case math.IsNaN(b.HintJitter) || b.HintJitter > 1 || b.HintJitter < 0 && b.HintJitter != NoJitter:
		return fmt.Errorf("%w: %s.HintJitter must be in [0, 1] or NoJitter, got %v", ErrInvalidConfig, path, b.HintJitter)
	case b.HintJitterMax < 0 && b.HintJitterMax != NoJitter:
		return fmt.Errorf("%w: %s.HintJitterMax must be >= 0 or NoJitter, got %v", ErrInvalidConfig, path, b.HintJitterMax)
	case b.SlotJitter < 0 && b.SlotJitter != NoJitter:
		return fmt.Errorf("%w: %s.SlotJitter must be >= 0 or NoJitter, got %v", ErrInvalidConfig, path, b.SlotJitter)
	}
	return nil
}

// Window returns the full-jitter window of retry number attempt (counted
// from 0): min(Cap, Base·2^attempt). A negative attempt counts as 0.
func (b Backoff) Window(attempt int) time.Duration {
	attempt = max(attempt, 0)
	base, cp := b.base(), b.cap()
	if attempt >= 62 || base > cp>>attempt {
		return cp
	}
	return base << attempt
}

// Delay returns the wait before retry number attempt (0 for the first
// retry) when the server gave no hint: uniform in [0, Window(attempt)).
func (b Backoff) Delay(attempt int) time.Duration {
	return time.Duration(b.float() * float64(b.Window(attempt)))
}

// DelayHint returns the wait before retry number attempt when the server
// sent a coarse hint (hint <= 0 means none, and gives Delay(attempt)):
// hint plus a jitter in [0, min(HintJitter·hint, HintJitterMax)). It is
// never less than hint. For an exact, server-spread slot, use DelaySlot.
func (b Backoff) DelayHint(attempt int, hint time.Duration) time.Duration {
	if hint <= 0 {
		return b.Delay(attempt)
	}
	return b.after(hint, min(time.Duration(b.hintFrac()*float64(hint)), b.hintMax()))
}

// DelaySlot returns the wait before retry number attempt when the server
// booked the client an exact slot, slot from now (slot <= 0 means none,
// and gives Delay(attempt)): slot plus a jitter in [0, SlotJitter). It is
// never less than slot.
func (b Backoff) DelaySlot(attempt int, slot time.Duration) time.Duration {
	if slot <= 0 {
		return b.Delay(attempt)
	}
	return b.after(slot, b.slotMax())
}

// after returns hint plus a jitter uniform in [0, j), saturating at the
// largest Duration.
func (b Backoff) after(hint, j time.Duration) time.Duration {
	d := hint + time.Duration(b.float()*float64(j))
	if d < hint { // overflow
		return math.MaxInt64
	}
	return d
}

// float returns a uniform number in [0, 1).
func (b Backoff) float() float64 {
	if b.Rand == nil {
		return rand.Float64()
	}
	return b.Rand()
}

func (b Backoff) base() time.Duration {
	if b.Base <= 0 {
		return defaultBase
	}
	return b.Base
}

func (b Backoff) cap() time.Duration {
	if b.Cap <= 0 {
		return max(defaultCap, b.base())
	}
	return max(b.Cap, b.base())
}

func (b Backoff) hintFrac() float64 {
	switch f := b.HintJitter; {
	case f == 0 || math.IsNaN(f):
		return defaultHintJitter
	case f < 0:
		return 0
	default:
		return min(f, 1)
	}
}

func (b Backoff) hintMax() time.Duration { return orDefault(b.HintJitterMax, defaultHintJitterMax) }

func (b Backoff) slotMax() time.Duration { return orDefault(b.SlotJitter, defaultSlotJitter) }

// orDefault returns def for 0, 0 for a negative d (NoJitter), else d.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
