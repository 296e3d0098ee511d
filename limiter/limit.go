package limiter

import (
	"fmt"
	"math"
	"time"

	"github.com/herdcap/herdcap/internal/ramp"
)

// Limit is a token-bucket limit: Rate tokens are added every Period, and the
// bucket holds at most Burst tokens, which is also the most a single request
// may take at once.
//
// Rate is a float64 so that fractional rates ("one token every 3 s" is
// Limit{Rate: 1, Period: 3 * time.Second} or PerSecond(1.0/3, 1)) and rates
// derived from measurements (clients per second) need no rounding. A zero
// Period means one second. The zero Limit is not valid; in a Request it
// means the budget's own limit.
type Limit struct {
	// Rate is the number of tokens added per Period. It must be > 0 and
	// finite.
	Rate float64
	// Period is the interval Rate is counted over. Zero means one second;
	// negative is invalid.
	Period time.Duration
	// Burst is the bucket's capacity in tokens: the most that can be taken
	// at once, and the number a new or idle key starts with. It must be >= 1.
	Burst int
}

// PerSecond returns a Limit of rate tokens per second with the given burst.
func PerSecond(rate float64, burst int) Limit {
	return Limit{Rate: rate, Period: time.Second, Burst: burst}
}

// PerMinute returns a Limit of rate tokens per minute with the given burst.
func PerMinute(rate float64, burst int) Limit {
	return Limit{Rate: rate, Period: time.Minute, Burst: burst}
}

// Every returns a Limit of one token per interval with the given burst.
func Every(interval time.Duration, burst int) Limit {
	return Limit{Rate: 1, Period: interval, Burst: burst}
}

// maxBurst bounds Burst so that token arithmetic stays exact in a float64
// (and in Lua's doubles on the Redis side).
const maxBurst = 1 << 40

// Validate reports whether l is usable. The error wraps ErrInvalidLimit and
// names the offending field.
func (l Limit) Validate() error { return l.check("Limit") }

// check is Validate naming fields as path.Field.
func (l Limit) check(path string) error {
	switch {
	case math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("%w: %s.Rate must be finite, got %v", ErrInvalidLimit, path, l.Rate)
	case l.Rate <= 0:
		return fmt.Errorf("%w: %s.Rate must be > 0, got %v", ErrInvalidLimit, path, l.Rate)
	case l.Period < 0:
		return fmt.Errorf("%w: %s.Period must be >= 0 (0 means one second), got %v", ErrInvalidLimit, path, l.Period)
	case l.Burst < 1:
		return fmt.Errorf("%w: %s.Burst must be >= 1, got %d", ErrInvalidLimit, path, l.Burst)
	case l.Burst > maxBurst:
		return fmt.Errorf("%w: %s.Burst must be <= %d, got %d", ErrInvalidLimit, path, int64(maxBurst), l.Burst)
	}
	if ps := l.PerSecond(); ps < 1e-9 || math.IsInf(ps, 0) || ps > 1e15 {
		return fmt.Errorf("%w: %s.Rate/%s.Period gives %v tokens per second, outside [1e-9, 1e15]", ErrInvalidLimit, path, path, ps)
	}
	return nil
}

// PerSecond returns the refill rate in tokens per second.
func (l Limit) PerSecond() float64 { return ramp.Limit(l).PerSecond() }

// Interval returns the time it takes to add one token.
func (l Limit) Interval() time.Duration {
	return durationFromTokens(1, l.PerSecond())
}

// String formats l as "rate/period burst b", for logs and errors.
func (l Limit) String() string {
	p := l.Period
	if p == 0 {
		p = time.Second
	}
	return fmt.Sprintf("%g/%v burst %d", l.Rate, p, l.Burst)
}

// durationFromTokens returns how long it takes to add tokens at perSec tokens
// per second, rounded up to the nanosecond.
func durationFromTokens(tokens, perSec float64) time.Duration { return ramp.Duration(tokens, perSec) }
