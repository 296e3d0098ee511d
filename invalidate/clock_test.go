package invalidate

import (
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
)

// vclock is the tests' virtual clock: it moves only when told (Add, Set,
// backwards too), and its timers fire when it is moved past them, so Run
// is driven in virtual time.
type vclock = fakeclock.Clock

func newVClock(t time.Time) *vclock { return fakeclock.New(t) }

type atomicBool struct{ v atomic.Bool }

func (b *atomicBool) Load() bool   { return b.v.Load() }
func (b *atomicBool) Store(v bool) { b.v.Store(v) }
