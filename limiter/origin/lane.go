package origin

import (
	"context"
	"math"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Lane is a call's priority at the origin.
//
// A Foreground call books a token of the budget's key Config.Name, held up
// to Config.MaxWait (and its caller's deadline less Config.MinCallTime),
// as a user's request should be.
//
// A Background call is never held, and never takes a token the foreground
// may need:
//   - with Config.Headroom, it first takes a token of a second key of the
//     same budget, Config.Name + "/background", whose requests carry the
//     limit Headroom.Spare() per second with a burst of 100 ms of it (at
//     least 1), so that background work across a fleet sharing the budget
//     stays within the spare rate; then a token of the main key (carrying
//     Headroom.Limit()) without waiting. Either refusing refuses the call,
//     with that decision's RetryAfter; a background token taken before the
//     main key refused is spent. A Spare of 0 refuses at once, with a
//     RetryAfter spread over [1 s, 2 s).
//   - without a Headroom (a fixed budget), it takes a token of the main key
//     only when the bucket keeps at least half its burst afterwards (a
//     peek, then a take without waiting), so that a burst of foreground
//     calls always finds tokens. A budget of burst 1 so leaves background
//     work nothing. Between the peek and the take another caller may take
//     tokens: the half is kept up to such races.
//
// A Foreground call held for its token has put the bucket in debt, so
// background work is refused while one waits, in both cases.
//
// A lane out of range is taken for Background: the lane that can never
// take what the foreground needs.
type Lane uint8

const (
	// Foreground is for user-facing calls: served first.
	Foreground Lane = iota
	// Background is for work that can wait (refetches after an
	// invalidation, warm-ups): it takes only what the foreground leaves.
	Background
)

// lanes is the number of Lanes.
const lanes = int(Background) + 1

// backgroundSuffix names the Background lane's key with a Headroom.
const backgroundSuffix = "/background"

// String returns "foreground" or "background" (also for a lane out of
// range, which is taken for Background).
func (l Lane) String() string {
	if l == Foreground {
		return "foreground"
	}
	return "background"
}

// Headroom is an adaptive limit for the origin: package headroom's
// *Origin implements it. A Guard calls it on every decision, outside any
// lock.
type Headroom interface {
	// Limit is the origin's current limit (calls per second, with its
	// burst), which the guard carries in every budget request.
	Limit() limiter.Limit
	// Spare is what background work may take now: calls per second the
	// foreground leaves unused (>= 0).
	Spare() float64
	// Record reports one call in lane: its latency and outcome; a refusal
	// is reported as Refused with latency 0. Allocation-free, safe for
	// concurrent use.
	Record(lane Lane, latency time.Duration, o Outcome)
}

// Bounds of the Background lane's decisions.
const (
	// spareRetry is a Background refusal's RetryAfter when the Headroom
	// has no spare (spread over [1, 2) times it): about one interval of a
	// headroom controller.
	spareRetry = time.Second
	// spareBurst is the Background key's burst, in time at the spare rate.
	spareBurst = 100 * time.Millisecond
	// maxSpare bounds a Spare the guard carries (the most a Limit allows).
	maxSpare = 1e15
	// maxSpareBurst bounds the Background key's burst.
	maxSpareBurst = 1 << 40
)

// background takes a Background call's tokens, never waiting (see Lane).
func (g *Guard) background(ctx context.Context) (Hold, error) {
	var lim limiter.Limit
	if g.headroom != nil {
		spare := g.headroom.Spare()
		if !(spare >= 1e-9) { // also NaN
			return g.refuse(Background, ReasonBudget, g.spread(spareRetry)), nil
		}
		spare = min(spare, maxSpare)
		burst := int(min(spare*spareBurst.Seconds(), maxSpareBurst))
		d, err := g.budget.Take(ctx, limiter.Request{Key: g.bgKey, N: 1, Limit: limiter.PerSecond(spare, max(burst, 1))})
		if err != nil {
			return Hold{g: g}, err
		}
		if !d.Allowed {
			return g.budgetRefusal(Background, d, d.RetryAfter), nil
		}
		lim = g.headroom.Limit()
	} else {
		d, err := g.budget.Take(ctx, limiter.Request{Key: g.name, N: 0})
		if err != nil {
			return Hold{g: g}, err
		}
		if wait := halfFull(d); wait > 0 {
			return g.budgetRefusal(Background, d, g.spread(wait)), nil
		}
	}
	d, err := g.budget.Take(ctx, limiter.Request{Key: g.name, N: 1, Limit: lim})
	if err != nil {
		return Hold{g: g}, err
	}
	if !d.Allowed {
		return g.budgetRefusal(Background, d, d.RetryAfter), nil
	}
	return Hold{Allowed: true, Via: d.Via, lane: Background, g: g}, nil
}

// halfFull returns 0 when the bucket a peek d saw keeps at least half its
// burst after one token is taken, else how long until it will: the tokens
// it lacks (from d.ResetAfter, which counts a debt too) at the limit's
// rate.
func halfFull(d limiter.Decision) time.Duration {
	burst := float64(d.Limit.Burst)
	perSec := d.Limit.PerSecond()
	if !(perSec > 0) || burst < 1 {
		return spareRetry // a budget that says nothing of its bucket: no room to spare
	}
	missing := d.ResetAfter.Seconds() * perSec // burst − tokens
	lack := missing + 1 - burst/2              // tokens needed so that 1 taken keeps burst/2
	if lack <= 1e-9 {
		return 0
	}
	return time.Duration(math.Ceil(lack / perSec * float64(time.Second)))
}
