// Package logthrottle limits the log records of a failure that can repeat
// on every request to about one a second, counting the ones it holds back.
package logthrottle

import (
	"sync/atomic"
	"time"
)

// Interval is the least time between two records a Throttle lets through.
const Interval = time.Second

// Throttle lets through one log record per Interval and counts the records
// it suppresses, so that a failing dependency under load (a limiter, an
// admission store, a coordinator) costs the log one line a second, not one
// per request. Each record let through should carry the count of those
// suppressed before it.
//
// The zero value is ready to use. A Throttle is lock-free and safe for
// concurrent use; it must not be copied after first use.
type Throttle struct {
	next       atomic.Int64 // unix ns before which records are suppressed
	suppressed atomic.Uint64
}

// Allow reports whether a record may be logged now and, if so, how many
// were suppressed since the last one let through.
func (t *Throttle) Allow() (suppressed uint64, ok bool) { return t.AllowAt(time.Now()) }

// AllowAt is Allow at time now.
func (t *Throttle) AllowAt(now time.Time) (suppressed uint64, ok bool) {
	ns := now.UnixNano()
	next := t.next.Load()
	if ns < next || !t.next.CompareAndSwap(next, ns+int64(Interval)) {
		t.suppressed.Add(1)
		return 0, false
	}
	return t.suppressed.Swap(0), true
}
