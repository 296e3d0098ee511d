package headroom

import "math"

// tally is what nodes reported of one origin over one interval, summed:
// the fleet's aggregate in a shared controller. Counts are whole numbers
// and latencies whole nanoseconds, held in float64 (exact below 2^53), so
// that the Lua mirror of step (stepLua) computes the same doubles.
type tally struct {
	calls   [2]float64 // calls that reached the origin, by lane
	refused [2]float64 // calls the guard refused, by lane
	out     [4]float64 // success, overload, timeout, failure
	latSum  float64    // sum of the success latencies, ns
	latMin  float64    // least success latency, ns; 0: no success
}

// add adds u to t.
func (t *tally) add(u tally) {
	for i := range t.calls {
		t.calls[i] += u.calls[i]
		t.refused[i] += u.refused[i]
	}
	for i := range t.out {
		t.out[i] += u.out[i]
	}
	t.latSum += u.latSum
	if u.latMin > 0 && (t.latMin == 0 || u.latMin < t.latMin) {
		t.latMin = u.latMin
	}
}

// state is one origin's controller state, carried from interval to
// interval: in memory, or in Redis (the script's hash fields of the same
// names).
type state struct {
	limit  float64         // calls/s
	cap    float64         // capacity estimate: success calls/s of the last saturated interval; 0: none yet
	probe  float64         // the next probe's step, calls/s; 0: √limit
	prev   float64         // the limit before the last interval, calls/s
	peak   float64         // the highest capacity estimate, calls/s; 0: none yet
	gain   float64         // the spare's gain, in [1, maxGain]
	mins   [window]float64 // the per-interval minimum latencies, ns, a ring; 0: none
	pos    int             // where the next minimum goes in mins
	n      int64           // intervals run
	last   tally           // the last interval's reports
	derive derived         // what step derived from them
}

// derived is what step derived from an interval's reports.
type derived struct {
	baseline, sample float64 // ns; 0: unknown
	saturated        bool
	spare            float64 // calls/s
}

// Fractions of the algorithm (the package doc states it).
const (
	// errorRatio: more overloads, timeouts and failures than this
	// fraction of the answered calls means the origin is saturated.
	errorRatio = 0.01
	// drainFactor: a saturated origin's limit falls to at least this
	// fraction of what it served, so that its queue drains.
	drainFactor = 0.97
	// drainIntervals is how many intervals a saturated origin's queue
	// (Little: the served rate times the latency above the baseline) is
	// given to drain.
	drainIntervals = 2
	// demandFactor: offered demand below this fraction of the limit in
	// force holds the limit (no probing without demand).
	demandFactor = 0.9
	// noiseBand: a saturated interval's served rate within
	// [noiseBand, 1/noiseBand] × the capacity estimate moves the
	// estimate a quarter of the way (noise); outside it, all the way (a
	// change of capacity).
	noiseBand = 0.9
	// nearStep caps a small step, as a fraction of the limit.
	nearStep = 0.02
	// coolShare and warmShare split the way from the baseline latency to
	// saturation (baseline·Tolerance): at most coolShare of it the
	// origin runs cold, above warmShare warm.
	coolShare, warmShare = 0.15, 0.5
	// tinyStep is a step above the capacity estimate, as a fraction of
	// the limit.
	tinyStep = 0.005
	// baseShare: a latency at most this share of the way to saturation
	// is at the baseline (the origin is idle).
	baseShare = 0.05
	// gainStep is how much the spare's gain changes per interval, as a
	// fraction of it, and maxGain its most.
	gainStep, maxGain = 0.03, 4
)

// newState returns the state of an origin starting at limit.
func newState(limit float64) state { return state{limit: limit, prev: limit, gain: 1} }

// step runs one control interval of secs seconds on the reports t: it
// updates s.limit and the rest of s (see the package doc for the
// algorithm). stepLua mirrors it operation for operation, so that the
// memory and Redis stores compute the same doubles.
func step(b *Bounds, s *state, t tally, secs float64) {
	s.n++
	s.last = t
	s.mins[s.pos] = t.latMin
	s.pos = (s.pos + 1) % window
	base := 0.0
	for _, m := range s.mins {
		if m > 0 && (base == 0 || m < base) {
			base = m
		}
	}
	answered := t.out[0] + t.out[1] + t.out[2] + t.out[3]
	sample := 0.0
	if t.out[0] > 0 {
		sample = t.latSum / t.out[0]
	}
	bad := t.out[1] + t.out[2] + t.out[3]
	failing := answered > 0 && bad > errorRatio*answered
	saturated := failing || (sample > 0 && base > 0 && sample > base*(1+b.Tolerance))
	// The queue is draining: saturated by latency alone, again, and less
	// than the interval before.
	draining := saturated && !failing && s.derive.saturated && sample < s.derive.sample
	// How warm the origin runs: cold below coolShare of the way from the
	// baseline to saturation, warm above warmShare.
	cold := sample == 0 || base == 0 || sample <= base*(1+coolShare*b.Tolerance)
	l := s.limit
	// The limit in force during the interval: the lesser of the last two
	// (a shared limit acts one interval late).
	inForce := math.Min(l, s.prev)
	offered := (t.calls[0] + t.calls[1] + t.refused[0] + t.refused[1]) / secs
	next := l
	switch {
	case draining:
		// The last fall was enough: hold while the queue drains.
		s.probe = 0
	case saturated:
		// The capacity estimate: what the origin served, averaged with the
		// estimate before unless they are far apart (a change of
		// capacity), as one interval's count is noisy.
		c := t.out[0] / secs
		switch {
		case s.cap > 0 && c > noiseBand*s.cap && c < s.cap/noiseBand:
			c = (c + 3*s.cap) / 4
		case s.cap > 0 && c <= noiseBand*s.cap && !failing && !s.derive.saturated:
			// Far below the estimate at the first saturated interval: a
			// queue from before while demand dipped, or a drop of
			// capacity; the next saturated interval confirms a drop.
			c = s.cap
		}
		s.cap = c
		if c >= noiseBand*s.peak {
			// Near or above the highest estimate: it follows (noise moves
			// both); far below, it is remembered (a drop of capacity).
			s.peak = c
		}
		s.probe = 0
		// Below what the origin served by enough to drain its queue
		// (Little: the served rate times the latency above the baseline)
		// within drainIntervals; without a latency to go by (failing),
		// by 1 − drainFactor.
		target := drainFactor * c
		if !failing {
			target = math.Max(target, c-c*(sample-base)/1e9/(drainIntervals*secs))
		}
		next = math.Max(l*(1-b.MaxFall), math.Min(l, target))
	case offered < demandFactor*inForce:
		// Demand-limited: hold.
	case cold && s.cap > 0 && l < s.cap:
		// Far from saturation below the capacity estimate: up to it, by
		// at most √limit.
		next = l + math.Min(math.Sqrt(l), math.Max(nearStep*l, s.cap-l))
		s.probe = 0
	case cold && !(s.derive.sample > s.derive.baseline*(1+coolShare*b.Tolerance)):
		// Far from saturation twice running, with no capacity estimate or
		// at or above it (it is stale): probe geometrically, up to the
		// highest capacity estimated (peak), where the origin served
		// before.
		known := s.peak
		need, p := 0.0, s.probe
		if p == 0 {
			p = math.Sqrt(l)
		}
		grow := true
		if l >= known {
			// Beyond any capacity seen: only once the calls reached the
			// limit (the last rise is in use), not in the interval after
			// a rise (a shared limit acts one interval late), and, unless
			// the latency is at its baseline, by small steps.
			need = l
			if l > s.prev {
				need = math.Inf(1)
			}
			if sample > base*(1+baseShare*b.Tolerance) {
				p, grow = math.Min(p, nearStep*l), false
			}
		}
		if (t.calls[0]+t.calls[1])/secs >= demandFactor*need {
			next = l + p
			if l < known {
				next = math.Min(next, known)
			}
			s.probe = 0
			if grow {
				s.probe = math.Min(2*p, b.MaxRise*l)
			}
		}
	case !cold && sample > base*(1+warmShare*b.Tolerance):
		// Warm: near saturation, hold.
		s.probe = 0
	case s.cap > 0 && l < s.cap/noiseBand:
		// Near the capacity estimate: small steps up to it, tiny ones
		// above it (a low estimate must not hold the limit down).
		up := math.Min(l+math.Min(math.Sqrt(l), nearStep*l), s.cap)
		next = math.Max(up, l+math.Min(math.Sqrt(l), tinyStep*l))
		s.probe = 0
	case l > s.prev:
		// No estimate near (none yet, or far below: stale), and the last
		// interval rose: hold until its effect shows (a shared limit acts
		// one interval late).
		s.probe = 0
	default:
		// No estimate near: a small step.
		next = l + math.Min(math.Sqrt(l), nearStep*l)
		s.probe = 0
	}
	next = math.Min(math.Max(next, l*(1-b.MaxFall)), l*(1+b.MaxRise))
	next = math.Min(math.Max(next, b.Floor), b.Ceiling)
	// The spare's gain: background work running while the limit is not
	// in use takes less than it is offered (a storm turns spare calls
	// into clients or sessions with a guess of what each costs), so the
	// offer grows; saturation, or refused background calls while the
	// limit is in use, shrink it; without background work it is 1.
	bg := (t.calls[1] + t.refused[1]) / secs
	switch {
	case bg == 0:
		s.gain = 1
	case saturated || t.refused[1] > 0 && offered >= demandFactor*inForce:
		s.gain = math.Max(1, s.gain/(1+gainStep))
	case offered < demandFactor*inForce:
		s.gain = math.Min(maxGain, s.gain*(1+gainStep))
	}
	s.prev = l
	s.limit = next
	s.derive = derived{
		baseline:  base,
		sample:    sample,
		saturated: saturated,
		spare:     s.gain * math.Max(0, next-(t.calls[0]+t.refused[0])/secs),
	}
}
