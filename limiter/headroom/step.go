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
	// drainFactor: a saturated origin's limit falls to this fraction of
	// what it served, so that its queue drains.
	drainFactor = 0.95
	// demandFactor: offered demand below this fraction of the limit holds
	// the limit (no probing without demand).
	demandFactor = 0.9
	// nearLow and nearHigh bound, as fractions of the capacity estimate,
	// the region in which probes are additive steps of √limit.
	nearLow, nearHigh = 0.9, 1.05
	// nearStep caps a probe's step near the capacity estimate, as a
	// fraction of it.
	nearStep = 0.02
)

// newState returns the state of an origin starting at limit.
func newState(limit float64) state { return state{limit: limit} }

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
	l := s.limit
	offered := (t.calls[0] + t.calls[1] + t.refused[0] + t.refused[1]) / secs
	next := l
	switch {
	case draining:
		// The last fall was enough: hold while the queue drains.
		s.probe = 0
	case saturated:
		c := t.out[0] / secs
		s.cap = c
		s.probe = 0
		next = math.Max(l*(1-b.MaxFall), math.Min(l, drainFactor*c))
	case offered < demandFactor*l:
		// Demand-limited: hold.
	default:
		p := s.probe
		if p == 0 {
			p = math.Sqrt(l)
		}
		rise := p
		if s.cap > 0 && l >= nearLow*s.cap && l < nearHigh*s.cap {
			rise = math.Min(rise, math.Min(math.Sqrt(l), nearStep*s.cap))
		}
		next = l + rise
		s.probe = math.Min(2*p, b.MaxRise*l)
	}
	next = math.Min(math.Max(next, l*(1-b.MaxFall)), l*(1+b.MaxRise))
	next = math.Min(math.Max(next, b.Floor), b.Ceiling)
	s.limit = next
	s.derive = derived{
		baseline:  base,
		sample:    sample,
		saturated: saturated,
		spare:     math.Max(0, next-(t.calls[0]+t.refused[0])/secs),
	}
}
