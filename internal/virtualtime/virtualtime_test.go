package virtualtime

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/fakeclock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestSchedulerOrder: tasks run one at a time, in virtual time order (ties
// in scheduling order), each seeing its own time on the clock.
func TestSchedulerOrder(t *testing.T) {
	clk := fakeclock.New(t0)
	s := New(clk)
	var log []string // no lock: one task at a time, handed over by channels
	task := func(name string, sleeps ...time.Duration) func() {
		return func() {
			for _, d := range sleeps {
				log = append(log, fmt.Sprintf("%s@%v", name, clk.Now().Sub(t0)))
				assert.NoError(t, s.Sleep(context.Background(), d))
			}
			log = append(log, fmt.Sprintf("%s@%v done", name, clk.Now().Sub(t0)))
		}
	}
	s.Go(t0, task("a", 3*time.Second, time.Second))
	s.Go(t0, task("b", 2*time.Second, 2*time.Second))
	s.Go(t0.Add(time.Second), task("c", 0))
	end := s.Run()
	assert.Equal(t, []string{
		"a@0s", "b@0s", "c@1s", "c@1s done", "b@2s", "a@3s", "b@4s done", "a@4s done", // b went to sleep first
	}, log)
	assert.Equal(t, t0.Add(4*time.Second), end)
	assert.Equal(t, t0.Add(4*time.Second), clk.Now())
}

func TestSchedulerSleepHonoursDoneContext(t *testing.T) {
	clk := fakeclock.New(t0)
	s := New(clk)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	s.Go(t0, func() { err = s.Sleep(ctx, time.Hour) })
	s.Run()
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, t0, clk.Now(), "no time passed")
}

func TestSchedulerEmpty(t *testing.T) {
	clk := fakeclock.New(t0)
	assert.Equal(t, t0, New(clk).Run())
}

// TestClockAfterFunc: code that sleeps through the scheduler's Clock (a
// timer that closes a channel it waits on) runs in virtual time, one task
// at a time, as with Sleep.
func TestClockAfterFunc(t *testing.T) {
	clk := fakeclock.New(t0)
	s := New(clk)
	c := s.Clock()
	sleep := func(d time.Duration) {
		woke := make(chan struct{})
		tm := c.AfterFunc(d, func() { close(woke) })
		<-woke
		assert.False(t, tm.Stop(), "a virtual timer cannot be stopped")
	}
	var log []string
	task := func(name string, sleeps ...time.Duration) func() {
		return func() {
			for _, d := range sleeps {
				log = append(log, fmt.Sprintf("%s@%v", name, c.Now().Sub(t0)))
				sleep(d)
			}
			log = append(log, fmt.Sprintf("%s@%v done", name, c.Now().Sub(t0)))
		}
	}
	s.Go(t0, task("a", 3*time.Second, -time.Second))
	s.Go(t0, task("b", time.Second, time.Second))
	end := s.Run()
	assert.Equal(t, []string{"a@0s", "b@0s", "b@1s", "b@2s done", "a@3s", "a@3s done"}, log)
	assert.Equal(t, t0.Add(3*time.Second), end)
}
