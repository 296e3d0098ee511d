package headroom

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/observe"
)

// TestControllerReportsHeadroom: an interval that changes the limit or
// the spare is reported to Config.Observe, from the control timer, whose
// hook may call back into the origin (it is called with no lock held).
func TestControllerReportsHeadroom(t *testing.T) {
	var (
		mu  sync.Mutex
		got []observe.Headroom
		o   *Origin
	)
	hook := func(e observe.Headroom) {
		_ = o.Stats()
		_ = o.Limit()
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 1000, Initial: 100}}, Clock: clk,
		Observe: &observe.Hooks{Headroom: hook}})
	require.NoError(t, err)
	defer c.Close()
	o, err = c.Origin("db")
	require.NoError(t, err)
	for range 3 {
		for range 50 {
			o.Record(origin.Foreground, 10*time.Millisecond, origin.Success)
		}
		clk.Add(time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, got)
	last := got[len(got)-1]
	assert.Equal(t, "db", last.Origin)
	assert.Equal(t, o.Limit().PerSecond(), last.Limit)
	assert.Equal(t, o.Spare(), last.Spare)
	assert.Equal(t, o.Stats().Saturated, last.Saturated)
}

// TestSharedControllerReportsBreaker: a shared controller's breaker opens
// when its redis-server dies, and Config.Observe hears of it.
func TestSharedControllerReportsBreaker(t *testing.T) {
	s := redistest.Start(t)
	got := make(chan observe.Breaker, 8)
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	// A generous time limit: CI runs under -race on 2 loaded cores.
	c, err := NewShared(fleet.Redis{Client: s.Client(t), Name: "observed", Timeout: time.Second, BreakerFailures: 1},
		SharedConfig{Config: Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 1000}}, Clock: clk,
			Observe: &observe.Hooks{Breaker: func(e observe.Breaker) { got <- e }}}})
	require.NoError(t, err)
	defer c.Close()
	s.Kill(t)
	clk.Add(time.Second) // one control interval: its report fails
	require.NotEmpty(t, got)
	assert.Equal(t, observe.Breaker{Policy: "observed", From: observe.BreakerClosed, To: observe.BreakerOpen}, <-got)
}
