package sysclock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := Or(nil)
	if _, ok := c.(Clock); !ok {
		t.Fatalf("Or(nil) = %T, want the system clock", c)
	}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("Now is %v off", d)
	}
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	if c.AfterFunc(time.Hour, func() {}).Stop() != true {
		t.Fatal("a pending timer stops")
	}
	other := Clock{}
	if Or(other) != other {
		t.Fatal("Or keeps a clock")
	}
}
