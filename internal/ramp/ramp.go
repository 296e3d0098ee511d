// Package ramp holds the arithmetic of limits that change over time, shared
// by every budget backend: the ramp of a budget's own limit (State), the
// ramp of one key between the limits its requests carry (Change), and the
// time tokens take to accrue (Duration).
package ramp

import (
	"math"
	"sync/atomic"
	"time"
)

// Limit has the shape of limiter.Limit, field for field, so that either
// converts to the other with a plain type conversion (limiter imports this
// package, so it cannot use limiter's type): Rate tokens per Period (zero:
// one second), at most Burst at once.
type Limit struct {
	Rate   float64
	Period time.Duration
	Burst  int
}

// PerSecond returns l's refill rate in tokens per second.
func (l Limit) PerSecond() float64 {
	p := l.Period
	if p == 0 {
		p = time.Second
	}
	return l.Rate * float64(time.Second) / float64(p)
}

// Same reports whether l and o refill at the same rate and hold the same
// burst, however they are written (10 per second, 600 per minute).
func (l Limit) Same(o Limit) bool { return l.Burst == o.Burst && l.PerSecond() == o.PerSecond() }

// Default is the window of a ramp when none is configured.
const Default = 10 * time.Second

// None is the configured window that means "no ramp": a new limit applies
// at once (limiter.NoRamp).
const None time.Duration = -1

// Window resolves a configured ramp window: 0 is Default, None is 0 (at
// once), a positive window is itself. It reports false for any other
// negative window.
func Window(d time.Duration) (time.Duration, bool) {
	switch {
	case d == 0:
		return Default, true
	case d == None:
		return 0, true
	case d < 0:
		return 0, false
	}
	return d, true
}

// Ramp is an immutable description of a limit over time: From until Start;
// a straight line from From to To, in rate and in burst, between Start and
// End; To from End on. Gen numbers a budget's ramps (State.Set increments
// it); a key's ramps leave it zero.
type Ramp struct {
	From, To   Limit
	Start, End time.Time
	Gen        uint64
}

// At returns the limit in force at t. Between Start and End its Period is
// To's and its Rate is interpolated per second; its Burst is rounded to
// the nearest token, at least one.
func (r *Ramp) At(t time.Time) Limit {
	if !t.Before(r.End) {
		return r.To
	}
	if t.Before(r.Start) {
		return r.From
	}
	f := float64(t.Sub(r.Start)) / float64(r.End.Sub(r.Start))
	from, to := r.From.PerSecond(), r.To.PerSecond()
	ps := from + (to-from)*f
	p := r.To.Period
	if p == 0 {
		p = time.Second
	}
	burst := int(math.Round(float64(r.From.Burst) + float64(r.To.Burst-r.From.Burst)*f))
	if burst < 1 {
		burst = 1
	}
	return Limit{Rate: ps * float64(p) / float64(time.Second), Period: r.To.Period, Burst: burst}
}

// Active reports whether t falls inside the ramp's window.
func (r *Ramp) Active(t time.Time) bool { return t.Before(r.End) }

// Change returns the ramp of a key whose requests carry l from now on. cur
// is the key's ramp so far (nil: its requests carried no limit before);
// full reports whether its bucket is full at now. A key seen for the first
// time, or idle (its bucket full and no ramp under way: a new key would be
// the same), takes l at once; so does every key when window is 0.
// Otherwise the key ramps from the limit in force at now to l over window.
// A limit the same as the one carried (Same) keeps the ramp as it is.
func Change(cur *Ramp, l Limit, now time.Time, window time.Duration, full bool) Ramp {
	switch {
	case cur != nil && cur.To.Same(l):
		r := *cur
		r.To = l
		return r
	case cur == nil || window <= 0 || (full && !cur.Active(now)):
		return Ramp{From: l, To: l, Start: now, End: now}
	}
	return Ramp{From: cur.At(now), To: l, Start: now, End: now.Add(window)}
}

// State holds a budget's current ramp. Reads are one atomic load; a Set
// replaces the whole ramp, starting from wherever the old one stood, so the
// limit never jumps.
type State struct {
	p      atomic.Pointer[Ramp]
	window time.Duration
}

// Init sets the limit to l, with no ramp, and the window of later changes
// (0: at once).
func (s *State) Init(l Limit, window time.Duration) {
	s.window = window
	s.p.Store(&Ramp{From: l, To: l, Gen: 1})
}

// Window returns the window of a change.
func (s *State) Window() time.Duration { return s.window }

// Load returns the current ramp.
func (s *State) Load() *Ramp { return s.p.Load() }

// At returns the limit at t and the ramp it came from.
func (s *State) At(t time.Time) (Limit, *Ramp) {
	r := s.p.Load()
	return r.At(t), r
}

// Set starts a ramp at now from the limit in force then to l, which the
// caller has validated.
func (s *State) Set(now time.Time, l Limit) {
	for {
		old := s.p.Load()
		nr := &Ramp{From: old.At(now), To: l, Start: now, End: now.Add(s.window), Gen: old.Gen + 1}
		if s.p.CompareAndSwap(old, nr) {
			return
		}
	}
}

// Duration returns how long it takes to add tokens at perSec tokens per
// second, rounded up to the nanosecond and saturated at the largest
// time.Duration; 0 for no tokens.
func Duration(tokens, perSec float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	ns := math.Ceil(tokens / perSec * float64(time.Second))
	if ns >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ns)
}
