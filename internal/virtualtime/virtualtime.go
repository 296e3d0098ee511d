// Package virtualtime runs test goroutines one at a time in virtual time, so
// that blocking client code (retries that sleep between attempts) can be
// driven through a long storm deterministically and in a fraction of the
// wall time.
package virtualtime

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
)

// Scheduler runs tasks one at a time on a fakeclock.Clock. A task is a
// function started with Go; it may suspend itself with Sleep. Run resumes
// the task due earliest (ties in the order they were scheduled), sets the
// clock to its time, and waits until that task sleeps again or returns
// before resuming the next, so that code the task calls (a server on
// loopback, say) reads the task's time on the clock, and the run is the
// same every time for the same inputs.
//
// A task may block on anything else (network I/O to a server running
// outside the scheduler) but must not wait for another task: only one runs
// at a time. Go and Run are called from the test's goroutine, Sleep and
// the AfterFunc of Clock only from tasks. Every task started must be run:
// call Run once after Go.
type Scheduler struct {
	clock *fakeclock.Clock
	yield chan struct{} // a running task has slept or returned

	mu  sync.Mutex
	q   queue
	seq uint64
}

// New returns a Scheduler driving clock.
func New(clock *fakeclock.Clock) *Scheduler {
	return &Scheduler{clock: clock, yield: make(chan struct{})}
}

type event struct {
	at   time.Time
	seq  uint64
	fire func() // a sleeping task's timer: wakes the task
	f    func() // or a task not yet started
}

type queue []event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (s *Scheduler) push(e event) {
	s.mu.Lock()
	e.seq = s.seq
	s.seq++
	heap.Push(&s.q, e)
	s.mu.Unlock()
}

// Go schedules f to start at virtual time at, on a goroutine of its own.
func (s *Scheduler) Go(at time.Time, f func()) { s.push(event{at: at, f: f}) }

// Sleep suspends the calling task for d of virtual time (d <= 0 yields to
// tasks due at the same time). It returns ctx's error without sleeping if
// ctx is already done; a context that ends during the sleep does not wake
// the task, since virtual time does not pass while it sleeps.
func (s *Scheduler) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	wake := make(chan struct{})
	s.Clock().AfterFunc(d, func() { close(wake) })
	<-wake
	return nil
}

// Clock returns the scheduler's clock, for code that sleeps through an
// injected clock (the shape of limiter.Clock): Now reads the virtual time,
// and AfterFunc, called from a task, schedules f at d of virtual time from
// now (d <= 0: now, after the tasks already due) and suspends the calling
// task: the scheduler goes on with the next task, and when f's time comes
// it sets the clock, calls f, which must wake the task (as a sleep's timer
// closes a channel the task waits on), and waits for the task to sleep
// again or return. The task must wait for nothing else meanwhile: virtual
// time does not pass while it waits, so its Timer's Stop does nothing
// (it reports false), and a context that ends does not wake it.
func (s *Scheduler) Clock() Clock { return Clock{s} }

// Clock is a Scheduler's clock; see Scheduler.Clock.
type Clock struct{ s *Scheduler }

// Now returns the virtual time.
func (c Clock) Now() time.Time { return c.s.clock.Now() }

// AfterFunc schedules f at d from now and suspends the calling task until
// f has woken it; see Scheduler.Clock.
func (c Clock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	c.s.push(event{at: c.s.clock.Now().Add(max(d, 0)), fire: f})
	c.s.yield <- struct{}{}
	return noStop{}
}

// noStop is the Timer of Clock.AfterFunc.
type noStop struct{}

func (noStop) Stop() bool { return false }

// Run runs the tasks until none is left, and returns the virtual time at
// which the last one ended.
func (s *Scheduler) Run() time.Time {
	for {
		s.mu.Lock()
		if s.q.Len() == 0 {
			s.mu.Unlock()
			return s.clock.Now()
		}
		e := heap.Pop(&s.q).(event)
		s.mu.Unlock()
		if e.at.After(s.clock.Now()) {
			s.clock.Set(e.at)
		}
		if e.f != nil {
			go func() {
				defer func() { s.yield <- struct{}{} }()
				e.f()
			}()
		} else {
			e.fire()
		}
		<-s.yield
	}
}
