package headroom_test

import (
	"fmt"
	"sync"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/headroom"
	"github.com/herdcap/herdcap/limiter/origin"
)

// clock is a Clock that moves only when told to (Add), firing its timers
// then.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (t *timer) Stop() bool { s := !t.stopped; t.stopped = true; return s }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	due := c.timers
	c.timers = nil
	c.mu.Unlock()
	for _, t := range due {
		switch {
		case t.stopped:
		case t.at.After(c.Now()):
			c.mu.Lock()
			c.timers = append(c.timers, t)
			c.mu.Unlock()
		default:
			t.stopped = true
			t.f()
		}
	}
}

func ExampleNew() {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := headroom.New(headroom.Config{
		Origins: map[string]headroom.Bounds{"db": {Floor: 10, Ceiling: 1000, Initial: 100}},
		Clock:   clk,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	db, err := c.Origin("db")
	if err != nil {
		panic(err)
	}
	// Each second the guard sends what the limit allows of a demand of
	// 400 calls/s (refusing the rest), and reports every outcome. The
	// origin answers in 5 ms until it saturates at 200 calls/s: then in
	// 40 ms, and it serves only 200 calls/s. Beyond any capacity it
	// measured, the controller waits an interval after each rise (a
	// shared limit acts one interval late).
	for range 14 {
		rate := db.Limit().Rate
		calls, lat := int(rate), 5*time.Millisecond
		if calls > 200 {
			calls, lat = 200, 40*time.Millisecond
		}
		for range calls {
			db.Record(origin.Foreground, lat, origin.Success)
		}
		for range 400 - int(rate) {
			db.Record(origin.Foreground, 0, origin.Refused)
		}
		clk.Add(time.Second)
		st := db.Stats()
		fmt.Printf("limit %.0f/s (burst %d), saturated %v\n", st.Limit.Rate, st.Limit.Burst, st.Saturated)
	}
	// Output:
	// limit 110/s (burst 11), saturated false
	// limit 110/s (burst 11), saturated false
	// limit 130/s (burst 13), saturated false
	// limit 130/s (burst 13), saturated false
	// limit 152/s (burst 16), saturated false
	// limit 152/s (burst 16), saturated false
	// limit 178/s (burst 18), saturated false
	// limit 178/s (burst 18), saturated false
	// limit 208/s (burst 21), saturated false
	// limit 196/s (burst 20), saturated true
	// limit 200/s (burst 21), saturated false
	// limit 200/s (burst 21), saturated false
	// limit 215/s (burst 22), saturated false
	// limit 196/s (burst 20), saturated true
}
