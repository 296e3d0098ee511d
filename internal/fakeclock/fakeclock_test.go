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
