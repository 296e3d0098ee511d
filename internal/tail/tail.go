// Package tail spreads the refusals of one key over time: the "denial
// tail" that keeps callers refused together from being told the same
// RetryAfter, so that they come back at the bucket's refill rate instead of
// all at once. The Go arithmetic here (limiter.Local, fleet.Leased) and the
// Lua of fleet.Strict's script are the same, step for step; Horizon's and
// Step's values are written into that script.
package tail

import (
	"math"
	"time"

	"github.com/herdcap/herdcap/internal/ramp"
)

// MinHorizon is the least a tail may run ahead of now: the horizon is
// max(burst ÷ rate, MinHorizon).
const MinHorizon = time.Minute

// Step is the golden-ratio step, (√5 − 1) ÷ 2, of the sequence that places
// refusals past the horizon: frac(key fraction + count × Step) is spread
// evenly over [0, 1) for any run of counts.
const Step = 0.6180339887498949

// Tail is one key's denial tail: At is the time (unix ns; 0: none) from
// which the next refused caller may be told to come back, Count the
// refusals since the tail last lay in the past. The zero value is a key
// that has refused nothing. A Tail is not safe for concurrent use: its
// owner locks it.
type Tail struct {
	At    int64
	Count uint64
}

// HorizonMicros returns the horizon in µs, as the script computes it from
// the rate in tokens per µs: max(burst ÷ rate, MinHorizon).
func HorizonMicros(perSec float64, burst int) float64 {
	return math.Max(float64(burst)/(perSec/1e6), float64(MinHorizon/time.Microsecond))
}

// Idle reports whether the tail lies in the past at now (unix ns): it holds
// nothing a new key would not.
func (t *Tail) Idle(now int64) bool { return t.At <= now }

// Refuse returns the RetryAfter of a refusal at now (unix ns) of a request
// waiting for need tokens under perSec and burst, whose own wait (until the
// bucket holds its tokens) is wait, and advances the tail:
//
//   - while the tail is less than a horizon ahead of now, the refusal is
//     told max(wait, tail − now), and the tail moves to that time plus need
//     tokens' worth, but never more than a horizon ahead of now;
//   - once it is a horizon ahead (a herd larger than a horizon of refills,
//     or callers that ignore RetryAfter and come straight back), the
//     refusal is told max(wait, x × horizon), where x is the fractional
//     part of KeyFraction(key) plus Count × Step (key in its
//     bucketkey.Local form): spread evenly over the horizon, and the tail
//     does not move, so that no caller can push everyone's waits out
//     without bound.
func (t *Tail) Refuse(now int64, wait time.Duration, need int, perSec float64, burst int, key string) time.Duration {
	if t.At <= now {
		t.Count = 0
	}
	t.Count++
	hUS := HorizonMicros(perSec, burst)
	h := int64(math.Ceil(hUS * 1e3))
	if t.At-now >= h {
		x := KeyFraction(key) + float64(t.Count)*Step
		x -= math.Floor(x)
		return max(wait, time.Duration(math.Ceil(x*hUS))*time.Microsecond)
	}
	ra := max(wait, time.Duration(t.At-now))
	t.At = min(now+int64(ra)+int64(ramp.Duration(float64(need), perSec)), now+h)
	return ra
}

// KeyFraction maps a key (in its bounded in-process form, bucketkey.Local)
// to [0, 1): FNV-1a 64, top 53 bits. Every backend passes the same key form,
// so the spread past the horizon is the same on all of them.
func KeyFraction(key string) float64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return float64(h>>11) / (1 << 53)
}
