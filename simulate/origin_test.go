package simulate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func testOrigin(capacity float64, timeout time.Duration, limit int) origin {
	sc := &Scenario{Origin: OriginSpec{Capacity: capacity, Latency: Duration(20 * time.Millisecond), Timeout: Duration(timeout), QueueLimit: limit}}
	return newOrigin(sc)
}

// TestOriginQueue: latency grows with the queue; past the timeout calls
// fail at the timeout while the origin still works through them.
func TestOriginQueue(t *testing.T) {
	o := testOrigin(10, time.Second, 0) // 100 ms per request
	at, out, wait := o.call(0)
	assert.Equal(t, served, out)
	assert.Equal(t, int64(120*time.Millisecond), at, "service plus base latency")
	assert.Zero(t, wait)
	// Nine more at the same instant queue behind it.
	for k := 1; k < 9; k++ {
		at, out, wait = o.call(0)
		assert.Equal(t, served, out)
		assert.Equal(t, int64(k)*int64(100*time.Millisecond), int64(wait))
		assert.Equal(t, int64(k+1)*int64(100*time.Millisecond)+int64(20*time.Millisecond), at)
	}
	// The tenth would finish at 1.02 s: over the timeout.
	at, out, _ = o.call(0)
	assert.Equal(t, timedOut, out)
	assert.Equal(t, int64(time.Second), at, "the caller learns at the timeout")
	// The work was still queued: the next call waits behind it.
	assert.InDelta(t, float64(time.Second), o.backlog(0), 1)
	// Once the queue drains, calls are fast again.
	at, out, _ = o.call(int64(5 * time.Second))
	assert.Equal(t, served, out)
	assert.Equal(t, int64(5*time.Second+120*time.Millisecond), at)
}

func TestOriginQueueLimit(t *testing.T) {
	o := testOrigin(10, time.Minute, 3)
	for range 3 {
		_, out, _ := o.call(0)
		assert.Equal(t, served, out)
	}
	at, out, _ := o.call(0)
	assert.Equal(t, rejected, out)
	assert.Equal(t, int64(20*time.Millisecond), at, "a rejection is fast")
	assert.InDelta(t, float64(300*time.Millisecond), o.backlog(0), 1, "and costs the origin nothing")
}
