package ramp

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want time.Duration
		ok   bool
	}{{0, Default, true}, {None, 0, true}, {time.Second, time.Second, true}, {-2, 0, false}, {-time.Hour, 0, false}} {
		got, ok := Window(tc.in)
		assert.Equal(t, tc.want, got, "%v", tc.in)
		assert.Equal(t, tc.ok, ok, "%v", tc.in)
	}
}

func TestRampAt(t *testing.T) {
	r := Ramp{From: Limit{Rate: 10, Burst: 10}, To: Limit{Rate: 6600, Period: time.Minute, Burst: 110}, Start: t0, End: t0.Add(10 * time.Second)}
	assert.Equal(t, r.From, r.At(t0.Add(-time.Second)), "before: from")
	assert.Equal(t, r.From.PerSecond(), r.At(t0).PerSecond())
	mid := r.At(t0.Add(5 * time.Second))
	assert.InDelta(t, 60, mid.PerSecond(), 1e-9, "halfway, per second")
	assert.Equal(t, time.Minute, mid.Period, "in the new limit's period")
	assert.Equal(t, 60, mid.Burst)
	assert.Equal(t, r.To, r.At(r.End), "the end: exactly to")
	assert.True(t, r.Active(t0))
	assert.False(t, r.Active(r.End))
	down := Ramp{From: Limit{Rate: 1, Burst: 2}, To: Limit{Rate: 1, Burst: 1}, Start: t0, End: t0.Add(time.Second)}
	assert.GreaterOrEqual(t, down.At(t0.Add(999*time.Millisecond)).Burst, 1, "never below one token")
}

func TestChange(t *testing.T) {
	lo, hi := Limit{Rate: 10, Burst: 10}, Limit{Rate: 110, Burst: 110}
	w := 10 * time.Second
	// First seen, or no window: at once.
	for _, r := range []Ramp{Change(nil, hi, t0, w, false), Change(&Ramp{From: lo, To: lo}, hi, t0, 0, false)} {
		assert.Equal(t, hi, r.At(t0))
		assert.False(t, r.Active(t0))
	}
	// Idle (full, no ramp under way): at once.
	r := Change(&Ramp{From: lo, To: lo}, hi, t0, w, true)
	assert.Equal(t, hi, r.At(t0))
	// In use: from the limit in force.
	r = Change(&Ramp{From: lo, To: lo}, hi, t0, w, false)
	assert.Equal(t, lo, r.At(t0))
	assert.InDelta(t, 60, r.At(t0.Add(5*time.Second)).PerSecond(), 1e-9)
	// Mid-ramp, even full: from where it stands, back down.
	back := Change(&r, lo, t0.Add(5*time.Second), w, true)
	assert.InDelta(t, 60, back.At(t0.Add(5*time.Second)).PerSecond(), 1e-9)
	assert.Equal(t, lo, back.At(t0.Add(15*time.Second)))
	// The same limit written another way keeps the ramp.
	same := Change(&r, Limit{Rate: 6600, Period: time.Minute, Burst: 110}, t0.Add(time.Second), w, false)
	assert.Equal(t, r.End, same.End)
	assert.Equal(t, time.Minute, same.To.Period)
	assert.True(t, hi.Same(Limit{Rate: 6600, Period: time.Minute, Burst: 110}))
	assert.False(t, hi.Same(Limit{Rate: 110, Burst: 111}))
}

func TestState(t *testing.T) {
	var s State
	s.Init(Limit{Rate: 10, Burst: 10}, 10*time.Second)
	assert.Equal(t, 10*time.Second, s.Window())
	l, r := s.At(t0)
	assert.Equal(t, Limit{Rate: 10, Burst: 10}, l)
	assert.Equal(t, uint64(1), r.Gen)
	s.Set(t0, Limit{Rate: 110, Burst: 110})
	l, r = s.At(t0.Add(5 * time.Second))
	assert.InDelta(t, 60, l.PerSecond(), 1e-9)
	assert.Equal(t, uint64(2), r.Gen)
	// A change mid-ramp starts from where the limit stands.
	s.Set(t0.Add(5*time.Second), Limit{Rate: 10, Burst: 10})
	l, _ = s.At(t0.Add(5 * time.Second))
	assert.InDelta(t, 60, l.PerSecond(), 1e-9, "no jump")
	assert.Same(t, s.Load(), s.Load())
}

func TestDuration(t *testing.T) {
	assert.Zero(t, Duration(0, 10))
	assert.Zero(t, Duration(-1, 10))
	assert.Equal(t, 100*time.Millisecond, Duration(1, 10))
	assert.Equal(t, time.Duration(333333334), Duration(1, 3), "rounded up to the ns")
	assert.Equal(t, time.Duration(math.MaxInt64), Duration(1e30, 1e-9), "saturated")
}
