package simulate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fixedCV() *float64 { v := 0.0; return &v }

// testOrigin is an origin of capacity requests per second with fixed
// service times, one worker, 20 ms base latency.
func testOrigin(capacity float64, timeout, maxQueue time.Duration, finish bool) origin {
	sc := &Scenario{Origin: OriginSpec{Capacity: capacity, Latency: Duration(20 * time.Millisecond),
		Timeout: Duration(timeout), MaxQueue: Duration(maxQueue), UnboundedQueue: maxQueue == 0,
		FinishAbandoned: finish, Concurrency: 1, ServiceCV: fixedCV()}}
	return newOrigin(sc)
}

// TestOriginLenient: the first simulator's origin (unbounded queue, no
// deadline propagation): latency grows with the queue; past the timeout
// calls fail at the timeout while the origin still works through them.
func TestOriginLenient(t *testing.T) {
	o := testOrigin(10, time.Second, 0, true) // 100 ms per request
	at, out, wait, waste := o.call(0, o.timeout)
	assert.Equal(t, served, out)
	assert.False(t, waste)
	assert.Equal(t, int64(120*time.Millisecond), at, "service plus base latency")
	assert.Zero(t, wait)
	// Eight more at the same instant queue behind it.
	for k := 1; k < 9; k++ {
		at, out, wait, _ = o.call(0, o.timeout)
		assert.Equal(t, served, out)
		assert.Equal(t, int64(k)*int64(100*time.Millisecond), int64(wait))
		assert.Equal(t, int64(k+1)*int64(100*time.Millisecond)+int64(20*time.Millisecond), at)
	}
	// The tenth would finish at 1.02 s: over the timeout.
	at, out, _, waste = o.call(0, o.timeout)
	assert.Equal(t, timedOut, out)
	assert.True(t, waste, "done for a caller that left")
	assert.Equal(t, int64(time.Second), at, "the caller learns at the timeout")
	// The work was still queued: the next call waits behind it.
	assert.InDelta(t, float64(time.Second), o.backlog(0), 1)
	// Once the queue drains, calls are fast again.
	at, out, _, _ = o.call(int64(5*time.Second), o.timeout)
	assert.Equal(t, served, out)
	assert.Equal(t, int64(5*time.Second+120*time.Millisecond), at)
}

// TestOriginDeadlinePropagation: a request whose caller gave up is
// stopped at the deadline (the work before it wasted) or dropped unstarted
// (no work at all), so the queue does not fill with work for nobody.
func TestOriginDeadlinePropagation(t *testing.T) {
	o := testOrigin(10, time.Second, 0, false)
	for range 9 {
		_, out, _, _ := o.call(0, o.timeout) // 0.1 … 0.9 s of work
		require.Equal(t, served, out)
	}
	// The tenth starts at 0.9 s, its deadline is at 0.98 s (timeout minus
	// base latency): stopped there, 80 ms wasted.
	at, out, _, waste := o.call(0, o.timeout)
	assert.Equal(t, timedOut, out)
	assert.True(t, waste)
	assert.Equal(t, int64(time.Second), at)
	assert.InDelta(t, float64(980*time.Millisecond), o.backlog(0), 1)
	// The eleventh would start after its deadline: dropped, no work.
	_, out, _, waste = o.call(0, o.timeout)
	assert.Equal(t, timedOut, out)
	assert.False(t, waste)
	assert.InDelta(t, float64(980*time.Millisecond), o.backlog(0), 1, "a dropped request costs nothing")
}

func TestOriginBoundedQueue(t *testing.T) {
	o := testOrigin(10, time.Minute, 300*time.Millisecond, false)
	for range 3 {
		_, out, _, _ := o.call(0, o.timeout)
		assert.Equal(t, served, out)
	}
	at, out, _, waste := o.call(0, o.timeout)
	assert.Equal(t, rejected, out)
	assert.False(t, waste)
	assert.Equal(t, int64(20*time.Millisecond), at, "a rejection is fast")
	assert.InDelta(t, float64(300*time.Millisecond), o.backlog(0), 1, "and costs the origin nothing")
}

// TestOriginWorkers: with Concurrency workers, requests run in parallel,
// each for Concurrency ÷ Capacity.
func TestOriginWorkers(t *testing.T) {
	sc := &Scenario{Origin: OriginSpec{Capacity: 40, Timeout: Duration(time.Minute), MaxQueue: Duration(time.Minute),
		Concurrency: 4, ServiceCV: fixedCV()}}
	o := newOrigin(sc)
	for range 4 {
		at, out, wait, _ := o.call(0, o.timeout)
		assert.Equal(t, served, out)
		assert.Zero(t, wait)
		assert.Equal(t, int64(100*time.Millisecond), at, "four at once, 100 ms each")
	}
	at, _, wait, _ := o.call(0, o.timeout)
	assert.Equal(t, float64(100*time.Millisecond), wait, "the fifth waits for a worker")
	assert.Equal(t, int64(200*time.Millisecond), at)
}

// TestOriginServiceTail: log-normal service times keep the capacity (the
// mean) and have the stated tail.
func TestOriginServiceTail(t *testing.T) {
	sc := &Scenario{Seed: 3, Origin: OriginSpec{Capacity: 1000, Timeout: Duration(time.Hour), UnboundedQueue: true, Concurrency: 1}}
	o := newOrigin(sc)
	const n = 200_000
	var sum float64
	var over float64
	for range n {
		d := o.serviceTime(0)
		sum += d
		if d > 4*float64(time.Millisecond) {
			over++
		}
	}
	// With 200,000 draws the mean's standard error is 1/√n ≈ 0.2% of it
	// (cv 1): 2% is ten standard errors.
	assert.InEpsilon(t, float64(time.Millisecond), sum/n, 0.02, "mean service time is 1/capacity")
	// Log-normal of cv 1: P(X > 4 × mean) ≈ 1.9%.
	assert.InDelta(t, 0.019, over/n, 0.004, "a tail past 4 × the mean")
}

// TestOriginCapacityChangeAndDegrade: a change scales service times; a
// degrading origin slows as its queue fills.
func TestOriginCapacityChangeAndDegrade(t *testing.T) {
	o := testOrigin(10, time.Hour, time.Second, false)
	o.setFactor(0.5)
	assert.Equal(t, float64(200*time.Millisecond), o.serviceTime(0), "half the capacity: twice the time")
	o.setFactor(1)
	o.degrade = 1
	assert.Equal(t, float64(150*time.Millisecond), o.serviceTime(float64(500*time.Millisecond)), "half-full queue: 1.5×")
	assert.Equal(t, float64(200*time.Millisecond), o.serviceTime(float64(5*time.Second)), "full queue: 1 + degrade")
}
