package admission

import (
	"math"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// paceRefresh is how old a reading of Config.Headroom may get before an
// Admit reads it again: 100 ms of the gate's clock. A headroom controller
// moves its limit at a bounded rate, so a tenth of a second behind it is
// close enough, and Spare costs one call per 100 ms, not one per Admit.
const paceRefresh = 100 * time.Millisecond

// readPace reads Config.Headroom at t and records the reading.
func (g *Gate) readPace(t time.Time) {
	if g.room == nil {
		return
	}
	g.paced.Store(math.Float64bits(g.room.Read()))
	g.pacedAt.Store(t.UnixNano())
}

// pace returns the sessions per second the headroom allows at t: the last
// reading, read again first when it is older than paceRefresh (or from a
// later time: the clock was set back). One Admit reads; concurrent ones use
// the reading before it, so Spare is never called twice at once by a gate.
func (g *Gate) pace(t time.Time) float64 {
	if age := t.UnixNano() - g.pacedAt.Load(); (age >= int64(paceRefresh) || age < 0) && g.reading.CompareAndSwap(false, true) {
		g.readPace(t)
		g.reading.Store(false)
	}
	return math.Float64frombits(g.paced.Load())
}

// pacedLimit returns l capped by the headroom's pace at t: l itself when
// the pace is at or above l's rate (or there is no Headroom); otherwise
// the pace per second, with l's burst scaled down in proportion (at least
// one token). The pace is never taken below two sessions per horizon, so
// that every refused client is still told a time within two horizons (see
// the package doc). No ramp: the headroom's controller already moves
// at a bounded rate, and the result is never above l, which ramps.
func (g *Gate) pacedLimit(l limiter.Limit, t time.Time) limiter.Limit {
	if g.room == nil {
		return l
	}
	ps := l.PerSecond()
	p := max(g.pace(t), 2/g.horizon.Seconds())
	if !(p < ps) {
		return l
	}
	return limiter.PerSecond(p, max(1, int(math.Ceil(float64(l.Burst)*p/ps))))
}
