package periodic

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/sysclock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoop(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var calls []time.Time
	l := Start(clk, time.Second, func() { calls = append(calls, clk.Now()) })
	clk.Add(500 * time.Millisecond)
	if len(calls) != 0 {
		t.Fatalf("called before the interval: %v", calls)
	}
	clk.Add(2500 * time.Millisecond)
	if len(calls) != 3 || calls[2].Sub(calls[0]) != 2*time.Second {
		t.Fatalf("calls %v, want 3 a second apart", calls)
	}
	l.Stop()
	l.Stop() // idempotent
	clk.Add(10 * time.Second)
	if len(calls) != 3 {
		t.Fatalf("called after Stop: %v", calls)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers left after Stop", n)
	}
}

// TestStopWaits: Stop returns only once a call under way has returned,
// and no call starts after it, on the system clock.
func TestStopWaits(t *testing.T) {
	var running, stopped atomic.Bool
	var once sync.Once
	started := make(chan struct{})
	release := make(chan struct{})
	l := Start(sysclock.Clock{}, time.Millisecond, func() {
		if stopped.Load() {
			t.Error("a call started after Stop returned")
		}
		running.Store(true)
		once.Do(func() { close(started); <-release })
		running.Store(false)
	})
	<-started
	done := make(chan bool)
	go func() {
		l.Stop()
		stopped.Store(true)
		done <- running.Load()
	}()
	// Not synchronisation: a window in which a Stop that did not wait
	// would return while the call is held.
	time.Sleep(20 * time.Millisecond)
	close(release)
	if <-done {
		t.Fatal("Stop returned while a call was under way")
	}
	time.Sleep(5 * time.Millisecond) // a window for a call after Stop
}
