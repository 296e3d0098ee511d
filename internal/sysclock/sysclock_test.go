package sysclock

import (
	"context"
	"errors"
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

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := Sleep(ctx, Clock{}, time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
	if err := Sleep(ctx, Clock{}, -time.Second); err != nil {
		t.Fatalf("Sleep(<0) = %v", err)
	}
	errs := make(chan error, 1)
	go func() { errs <- Sleep(ctx, Clock{}, time.Hour) }()
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled Sleep = %v", err)
	}
	if err := Sleep(ctx, Clock{}, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a done context = %v", err)
	}
}
