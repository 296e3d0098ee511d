package simulate

import (
	"sync/atomic"
	"time"
)

// epoch is virtual time zero: a fixed instant, so that every run hands the
// components the same times (the Redis scripts see them as µs since the
// Unix epoch).
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// vclock is the virtual clock the real components are given (their
// WithClock options). The simulator moves it; components may read it from
// their own goroutines, hence the atomic.
type vclock struct{ ns atomic.Int64 }

// Now returns the virtual time.
func (c *vclock) Now() time.Time { return epoch.Add(time.Duration(c.ns.Load())) }

func (c *vclock) set(ns int64) { c.ns.Store(ns) }

// at converts virtual ns to a time.Time.
func at(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }
