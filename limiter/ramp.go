package limiter

import (
	"math"
	"sync/atomic"
	"time"
)

// ramp is an immutable description of the limit over time: from, until start;
// a straight line from from to to between start and end; to afterwards. A
// new SetLimit replaces the whole ramp (atomically), starting from wherever
// the old one stood, so a limit never jumps.
type ramp struct {
	from, to   Limit
	start, end time.Time
	gen        uint64 // incremented by every SetLimit
}

// at returns the limit in force at t.
func (r *ramp) at(t time.Time) Limit {
	if !t.Before(r.end) {
		return r.to
	}
	if t.Before(r.start) {
		return r.from
	}
	f := float64(t.Sub(r.start)) / float64(r.end.Sub(r.start))
	from, to := r.from.PerSecond(), r.to.PerSecond()
	ps := from + (to-from)*f
	p := r.to.Period
	if p == 0 {
		p = time.Second
	}
	burst := int(math.Round(float64(r.from.Burst) + float64(r.to.Burst-r.from.Burst)*f))
	if burst < 1 {
		burst = 1
	}
	return Limit{Rate: ps * float64(p) / float64(time.Second), Period: r.to.Period, Burst: burst}
}

// active reports whether t falls inside the ramp's window.
func (r *ramp) active(t time.Time) bool { return t.Before(r.end) }

// limitState holds a backend's current ramp. Reads are a single atomic load.
type limitState struct {
	p      atomic.Pointer[ramp]
	window time.Duration
}

func (s *limitState) init(l Limit, window time.Duration) {
	s.window = window
	s.p.Store(&ramp{from: l, to: l, gen: 1})
}

// at returns the limit at t and the ramp it came from.
func (s *limitState) at(t time.Time) (Limit, *ramp) {
	r := s.p.Load()
	return r.at(t), r
}

// set starts a ramp at now from the limit in force then to l.
func (s *limitState) set(now time.Time, l Limit) error {
	if err := l.Validate(); err != nil {
		return err
	}
	for {
		old := s.p.Load()
		nr := &ramp{from: old.at(now), to: l, start: now, end: now.Add(s.window), gen: old.gen + 1}
		if s.p.CompareAndSwap(old, nr) {
			return nil
		}
	}
}
