package fakeclock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	if got := c.Add(time.Second); !got.Equal(t0.Add(time.Second)) || !c.Now().Equal(got) {
		t.Fatalf("Add: got %v", got)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Set: got %v", c.Now())
	}
}

func TestClockTimers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	var fired []string
	var seenAt []time.Time
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "b"); seenAt = append(seenAt, c.Now()) })
	c.AfterFunc(time.Second, func() {
		fired = append(fired, "a")
		seenAt = append(seenAt, c.Now())
		c.AfterFunc(500*time.Millisecond, func() { fired = append(fired, "a2"); seenAt = append(seenAt, c.Now()) })
	})
	stopped := c.AfterFunc(1500*time.Millisecond, func() { fired = append(fired, "stopped") })
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "b2") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop reports true once, for a pending timer")
	}
	c.Add(999 * time.Millisecond)
	if len(fired) != 0 {
		t.Fatalf("fired early: %v", fired)
	}
	c.Set(t0.Add(-time.Hour)) // back: nothing fires
	c.Set(t0.Add(3 * time.Second))
	want := []string{"a", "a2", "b", "b2"}
	if len(fired) != len(want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	for i := range want {
		if fired[i] != want[i] {
			t.Fatalf("fired %v, want %v", fired, want)
		}
	}
	for i, at := range []time.Duration{time.Second, 1500 * time.Millisecond, 2 * time.Second} {
		if !seenAt[i].Equal(t0.Add(at)) {
			t.Fatalf("timer %d saw %v, want %v", i, seenAt[i], t0.Add(at))
		}
	}
	if !c.Now().Equal(t0.Add(3*time.Second)) || c.Pending() != 0 {
		t.Fatalf("now %v, %d pending", c.Now(), c.Pending())
	}
	// A timer already due fires at the next move.
	c.AfterFunc(0, func() { fired = append(fired, "now") })
	c.Add(0)
	if fired[len(fired)-1] != "now" {
		t.Fatalf("fired %v", fired)
	}
}

// TestTimerMayUseTheClock: a timer's f runs with the clock unlocked, on the
// goroutine that moves it (the fired flags are read without
// synchronisation: -race would see another goroutine), so it may read the
// clock, set timers and stop them.
func TestTimerMayUseTheClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	var firedA, firedB bool
	b := c.AfterFunc(2*time.Second, func() { firedB = true })
	c.AfterFunc(time.Second, func() {
		firedA = b.Stop() && c.Now().Equal(t0.Add(time.Second))
	})
	c.Add(time.Hour)
	if !firedA || firedB || c.Pending() != 0 {
		t.Fatalf("firedA %v, firedB %v, %d pending", firedA, firedB, c.Pending())
	}
}
